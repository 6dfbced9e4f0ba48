// The few Node APIs this stand-in uses. A real project installs @types/node; declaring them
// here keeps the offline build to one vendored package, the compiler.
declare module "http" {
  interface IncomingMessage {
    method?: string;
    url?: string;
    resume(): void;
  }
  interface ServerResponse {
    statusCode: number;
    setHeader(name: string, value: string | number): void;
    end(body?: string): void;
  }
  interface Server {
    keepAliveTimeout: number;
    listen(port: number, host: string, callback: () => void): Server;
  }
  function createServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Server;
}

declare const process: {
  env: Record<string, string | undefined>;
  exit(code: number): never;
};
declare const console: { log(...args: unknown[]): void; error(...args: unknown[]): void };
declare const performance: { now(): number };
declare function setTimeout(callback: () => void, ms: number): unknown;
