// tripdump/node: the Node.js runtime from outside (inspector, heap snapshots, stacks, its triggers).
export {
  type CaptureStackOptions,
  type CpuProfileOptions,
  captureNodeStack,
  defaultNodeOutputs,
  formatNodeStack,
  type HeapSnapshotResult,
  NODE_OUTPUTS,
  NodeCoreAction,
  type NodeFileOptions,
  type NodeFileResult,
  type NodeOutput,
  NodeOutputAction,
  type NodeOutputOptions,
  type NodeStack,
  nodeActions,
  type StackFrame,
  writeCpuProfile,
  writeHeapSnapshot,
  writeNodeReport,
} from './actions.js';
export { CdpSession } from './cdp.js';
export {
  detectNode,
  handlesSigusr1,
  type InspectHints,
  inspectHints,
  isNodeProcess,
  type NodeFacts,
} from './detect.js';
export { NodeInspectorError, type NodeInspectorReason } from './errors.js';
export {
  NodeInspector,
  type NodeInspectorOptions,
  nodeInspectors,
  withNodeInspector,
} from './inspector.js';
export { HeapUsedTrigger, type LoopDelayOptions, LoopDelayTrigger } from './triggers.js';
