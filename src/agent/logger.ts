// The agent's logger: pino, JSON lines on stderr (stdout stays free for command output), at the
// configured level. Components log through children (`logger.child({ component: 'source' })`)
// and put the machine's key in a `machine` field, so one guest's story can be grepped out.
import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from './config.ts';

export type { Logger } from 'pino';

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      name: 'umlmon',
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ fd: 2, sync: false }),
  );
}
