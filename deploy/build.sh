#!/bin/sh
# The connector's build steps, in the directory holding package.json, package-lock.json, tsconfig*.json,
# src/ and bin/: a clean install, the compiled build (dist/), then the production dependencies only.
# The Dockerfile runs this script, and so does the CI check of those steps
# (test/deploy/build-steps.test.ts), so the two cannot drift apart. NPM_CI_FLAGS adds flags to npm ci
# (the check passes --prefer-offline).
set -eu
npm ci --no-audit --no-fund ${NPM_CI_FLAGS:-}
npm run build
npm prune --omit=dev --no-audit --no-fund
