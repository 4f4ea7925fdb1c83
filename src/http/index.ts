/** The shared HTTP core: import from here (or the single modules) in vendor clients. */
export { systemClock, FakeClock } from './clock.ts';
export type { Clock, FakeClockOptions } from './clock.ts';
export { BudgetWait, RateLimiter } from './rate-limiter.ts';
export type { OutageOptions, RateWindow, RateLimiterOptions, RateLimiterStats, RequestOutcome, VendorState } from './rate-limiter.ts';
export { HttpClient, ApiError } from './http-client.ts';
export type { HttpClientOptions, RequestOptions, HttpResponse, DownloadOptions, DownloadResponse, ApiErrorCode } from './http-client.ts';
export { BODY_EXCERPT_CHARS, codeForStatus } from './api-error.ts';
export type { ApiErrorInit } from './api-error.ts';
export { parseRateLimitReset, vendorWaitMs } from './rate-limit-headers.ts';
export { safeUrl, looksSecret } from './safe-url.ts';
export { classifyAddress, createGuardedFetch, isPublicAddress } from './guarded-fetch.ts';
export type { AddressKind, GuardedFetchOptions, ResolvedAddress } from './guarded-fetch.ts';
