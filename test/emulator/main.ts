// Local use: node test/emulator/main.ts --port 6443 --kubeconfig /tmp/emulator.kubeconfig
// then: kubectl --kubeconfig /tmp/emulator.kubeconfig apply -f crds/
import { copyFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startEmulator } from './index.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    kubeconfig: { type: 'string' },
    'watch-history': { type: 'string', default: '10000' },
  },
});

const emulator = await startEmulator({ port: Number(values.port), watchHistory: Number(values['watch-history']) });
if (values.kubeconfig) copyFileSync(emulator.kubeconfigPath, values.kubeconfig);
process.stdout.write(`Kubernetes API emulator listening on ${emulator.url}\nkubeconfig: ${values.kubeconfig ?? emulator.kubeconfigPath}\n`);
const stop = (): void => { void emulator.close().then(() => process.exit(0)); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
