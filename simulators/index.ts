/**
 * The simulators' programmatic API: start a faithful fake of a vendor on a port of its own, drive it
 * (changes, activity, faults) and inspect what it saw and sent. Test and demo infrastructure only; the
 * product's runtime never imports this.
 */
export {
  ActivityLoop,
  FaultControl,
  FixedWindow,
  ManualClock,
  NO_FAULTS,
  RequestLog,
  VersionedStore,
  WebhookSender,
  acceleratedClock,
  realClock,
  startServer,
  type Delivery,
  type Faults,
  type RunningSimulator,
  type SeenRequest,
  type SimClock,
} from './common.ts';
export { createRandom, type Random } from './generator/random.ts';
export { generateTeamworkData, type TeamworkGeneratorOptions } from './generator/teamwork.ts';
export { generateMissiveData, type MissiveGeneratorOptions } from './generator/missive.ts';
export {
  startTeamworkSimulator,
  type TeamworkSimulator,
  type TeamworkSimulatorOptions,
  type TeamworkCredentials,
  type TeamworkLimits,
  type TeamworkQuirks,
  type TaskEvent,
  type TwTask,
  type TwWebhook,
} from './teamwork/index.ts';
export {
  startMissiveSimulator,
  type MissiveSimulator,
  type MissiveSimulatorOptions,
  type MissiveCredentials,
  type MissiveLimits,
  type MissiveQuirks,
  type RuleType,
  type MvConversation,
  type MvMessage,
  type MvRule,
} from './missive/index.ts';

export { startAirtableSimulator, type AirtableSimulator, type AirtableSimulatorOptions } from './airtable/index.ts';
