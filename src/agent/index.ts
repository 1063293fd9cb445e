// tripdump/agent: the rules-file agent as a library. The only entry point that loads yaml, ajv and
// prom-client, so `import 'tripdump'` does not pay for them.
export { Agent, type AgentOptions, type AgentStatus } from './agent.js';
export { type AgentConfig, ConfigError, loadConfig, parseConfig } from './config.js';
export { AgentServer } from './server.js';
