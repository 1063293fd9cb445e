// Why a Node target's inspector could not be used, as one typed error with a reason code: callers branch on
// `reason`, people read `message`.
import { TripdumpError } from '../../errors.js';

export type NodeInspectorReason =
  /** The process is not a Node.js process. */
  | 'not-node'
  /** It does not handle SIGUSR1 (started with --disable-sigusr1): the signal would kill it. */
  | 'sigusr1-disabled'
  /** SIGUSR1 was sent but no inspector started listening (port in use, the app handles SIGUSR1, blocked). */
  | 'not-opened'
  /** The inspector answered with a CDP error, or sent something that is not CDP. */
  | 'protocol'
  /** The connection ended (the target exited, or someone closed its inspector). */
  | 'closed'
  /** The target did not answer in time (its JavaScript does not get control). */
  | 'timeout'
  /** Code evaluated in the target threw. */
  | 'evaluate';

export class NodeInspectorError extends TripdumpError {
  override name = 'NodeInspectorError';
  constructor(
    readonly pid: number,
    readonly reason: NodeInspectorReason,
    message: string,
    /** The CDP error code, for 'protocol' errors the target sent. */
    readonly code?: number,
  ) {
    super(message);
  }
}
