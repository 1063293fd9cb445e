// tripdump/crash: crash notifications from tripdump's crash handler (`tripdump crash-handler install`) and
// the trigger that fires on them.
export { type CrashInfo, CrashListener, decodeCrash, encodeCrash } from './protocol.js';
export { CrashTrigger } from './trigger.js';
