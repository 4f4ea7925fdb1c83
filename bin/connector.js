#!/usr/bin/env node
// Runs the TypeScript entry point directly through tsx (a runtime dependency), so the installed
// command needs no build step. `npm run build` produces dist/ for those who prefer plain JavaScript.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
