// The agent's HTTP endpoint: /metrics (Prometheus text), /status (JSON), /healthz. Loopback by default;
// any other address must be given explicitly (the status names processes and files).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SystemError } from '../errors.js';

export interface Endpoints {
  /** The exposition text and its content type. */
  metrics(): Promise<{ contentType: string; body: string }>;
  status(): unknown;
}

export class AgentServer {
  #server: Server | undefined;

  constructor(private readonly endpoints: Endpoints) {}

  /** Listens on host:port; rejects with a SystemError naming the address (EADDRINUSE, EACCES…). */
  listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://agent');
      const send = (code: number, type: string, body: string) => {
        res.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'GET only\n');
      switch (url.pathname) {
        case '/metrics':
          this.endpoints.metrics().then(
            (m) => send(200, m.contentType, m.body),
            (e: Error) => send(500, 'text/plain', `${e.message}\n`),
          );
          return;
        case '/status': {
          let body: string;
          try {
            body = `${JSON.stringify(this.endpoints.status(), null, 2)}\n`;
          } catch (e) {
            return send(500, 'text/plain', `${(e as Error).message}\n`);
          }
          return send(200, 'application/json', body);
        }
        case '/healthz':
          return send(200, 'text/plain', 'ok\n');
        default:
          return send(404, 'text/plain', 'not found: try /metrics or /status\n');
      }
    });
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new SystemError(
            {
              errno: e.errno ?? 0,
              code: e.code ?? 'EIO',
              syscall: e.syscall ?? 'listen',
              path: `${host}:${port}`,
            },
            `cannot serve metrics on ${host}:${port}: ${e.code ?? e.message}`,
          ),
        ),
      );
      server.listen(port, host, () => resolve(server.address() as AddressInfo));
    });
  }

  close(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (!s) return Promise.resolve();
    s.closeAllConnections();
    return new Promise((resolve) => s.close(() => resolve()));
  }
}
