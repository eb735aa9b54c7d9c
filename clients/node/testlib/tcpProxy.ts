// A loopback TCP proxy in front of the sidecar, so a test can cut the network under a client
// (every open connection is destroyed; new ones go through again).
import { AddressInfo, Server, Socket, createConnection, createServer } from "node:net";

export interface TcpProxy {
  target: string;
  /** Destroy every connection open now, as a network failure would. */
  cut(): void;
  /** Connections accepted so far. */
  readonly accepted: number;
  stop(): Promise<void>;
}

export async function startTcpProxy(upstream: string): Promise<TcpProxy> {
  const [host, port] = [upstream.slice(0, upstream.lastIndexOf(":")), Number(upstream.slice(upstream.lastIndexOf(":") + 1))];
  const open = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((downstream) => {
    accepted += 1;
    const up = createConnection({ host, port });
    for (const socket of [downstream, up]) {
      open.add(socket);
      socket.on("close", () => open.delete(socket));
      socket.on("error", () => undefined); // a cut shows as a reset on the other side
    }
    downstream.pipe(up);
    up.pipe(downstream);
    downstream.on("close", () => up.destroy());
    up.on("close", () => downstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    target: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut: () => {
      for (const socket of open) socket.destroy();
    },
    get accepted() {
      return accepted;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
