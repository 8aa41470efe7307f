// UML's management console, natively: the request/reply client, the notify socket, and the
// wire format underneath both.
export { MconsoleClient, DEFAULT_MCONSOLE_TIMEOUT_MS, DEFAULT_MCONSOLE_IDLE_CLOSE_MS, REPLY_PART_GAP_MS } from './client.ts';
export type { MconsoleClientOptions } from './client.ts';
export {
  MconsoleError, MconsoleTimeoutError, MconsoleUnreachableError, InvalidMconsoleCommandError, MconsoleIncompleteReplyError,
  MconsoleProtocolError, MconsoleClosedError,
} from './errors.ts';
export { listenNotify } from './notify.ts';
export type { NotifyListener } from './notify.ts';
export {
  decodeNotify, encodeNotify, encodeRequest, decodeRequest, decodeReply, encodeReply, commandProblem,
  MCONSOLE_MAGIC, MCONSOLE_VERSION, MCONSOLE_MAX_DATA, MCONSOLE_MAX_COMMAND_BYTES,
} from './protocol.ts';
export type { NotifyMessage } from './protocol.ts';
