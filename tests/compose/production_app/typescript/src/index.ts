// A minimal TypeScript Vision Resource Manager serving the backend API vrm expects of a team's
// real service: GET /health, GET /metrics (Prometheus text with the seed's vision_manager_*
// names) and GET /api/v1/vision/metrics. It exists so the production Dockerfile
// (docker/Dockerfile.typescript) is built and run by a test. It runs no models: the vision
// metrics call waits WORK_MS (default 3, the typescript rehearsal profile's median) in place of
// a real service's work, so `vrm validate`'s speed check compares something.
import { createServer, ServerResponse } from "http";

const BACKEND = "typescript";
// The rehearsal backend's histogram buckets (seconds).
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

function setting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") {
    return fallback;
  }
  const value = Number(raw);
  if (!Number.isFinite(value)) {
    console.error(`${name}=${raw}: not a number`);
    process.exit(2);
  }
  return value;
}

const port = setting("PORT", 3002);
const maxVramGb = setting("MAX_VRAM_GB", 20);
const workMs = setting("WORK_MS", 3);
const started = performance.now();
const uptime = (): number => Math.round((performance.now() - started) / 100) / 10;

// Served vision tasks: a count and a cumulative histogram of their durations.
const tasks = { count: 0, buckets: BUCKETS.map(() => 0), sumSeconds: 0 };

function record(seconds: number): void {
  tasks.count += 1;
  tasks.sumSeconds += seconds;
  BUCKETS.forEach((bound, i) => {
    if (seconds <= bound) {
      tasks.buckets[i] += 1;
    }
  });
}

// The seed's metric names, labelled `backend` as the rehearsal backend labels them.
function metrics(): string {
  const labels = `backend="${BACKEND}",task="metrics"`;
  const only = `backend="${BACKEND}"`;
  return [
    "# HELP vision_manager_task_duration_seconds Vision task execution time",
    "# TYPE vision_manager_task_duration_seconds histogram",
    ...BUCKETS.map((bound, i) =>
      `vision_manager_task_duration_seconds_bucket{${labels},le="${bound}"} ${tasks.buckets[i]}`),
    `vision_manager_task_duration_seconds_bucket{${labels},le="+Inf"} ${tasks.count}`,
    `vision_manager_task_duration_seconds_sum{${labels}} ${tasks.sumSeconds}`,
    `vision_manager_task_duration_seconds_count{${labels}} ${tasks.count}`,
    "# HELP vision_manager_tasks_total Vision tasks processed",
    "# TYPE vision_manager_tasks_total counter",
    `vision_manager_tasks_total{${only},status="success"} ${tasks.count}`,
    `vision_manager_tasks_total{${only},status="error"} 0`,
    "# HELP vision_manager_vram_used_gb VRAM in use (no models loaded)",
    "# TYPE vision_manager_vram_used_gb gauge",
    `vision_manager_vram_used_gb{${only}} 0`,
    "# HELP vision_manager_vram_limit_gb VRAM limit (MAX_VRAM_GB)",
    "# TYPE vision_manager_vram_limit_gb gauge",
    `vision_manager_vram_limit_gb{${only}} ${maxVramGb}`,
    "# HELP vision_manager_models_loaded Models resident in VRAM",
    "# TYPE vision_manager_models_loaded gauge",
    `vision_manager_models_loaded{${only}} 0`,
    "",
  ].join("\n");
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.statusCode = status;
  res.setHeader("Content-Type", type);
  res.end(body);
}

function json(res: ServerResponse, status: number, body: object): void {
  send(res, status, "application/json", JSON.stringify(body));
}

const server = createServer((req, res) => {
  req.resume(); // a body nobody reads must not stall the connection
  if (req.method !== "GET" && req.method !== "HEAD") {
    json(res, 405, { error: "method not allowed" });
    return;
  }
  switch ((req.url ?? "").split("?")[0]) {
    case "/health":
      json(res, 200, { status: "healthy", backend: BACKEND, uptime_seconds: uptime() });
      return;
    case "/metrics":
      send(res, 200, "text/plain; version=0.0.4; charset=utf-8", metrics());
      return;
    case "/api/v1/vision/metrics": {
      const begun = performance.now();
      setTimeout(() => {
        record((performance.now() - begun) / 1000);
        json(res, 200, {
          backend: BACKEND, status: "healthy", uptime_seconds: uptime(),
          tasks_total: tasks.count, tasks_failed: 0, vram_used_gb: 0.0,
          max_vram_gb: maxVramGb, models_loaded: [], api_version: "v1",
        });
      }, workMs);
      return;
    }
    default:
      json(res, 404, { error: "not found" });
  }
});
// Longer than nginx keeps an idle upstream connection, so nginx closes first.
server.keepAliveTimeout = 65_000;
server.listen(port, "0.0.0.0", () => console.log(`vision-manager (${BACKEND}) listening on :${port}`));
