// A backend vrm did not write, standing in for the team's TypeScript one: Node's own `http`
// module, no framework, no X-VRM-* header. Every answer carries what real services carry:
// a whole-millisecond ISO clock (`served_at`), an integer uptime, and a per-request id.
// Modes, switched at runtime with POST /_mode {"mode": ...}:
//   ok            answers are a function of the request (plus the clock, uptime and id)
//   diverge5      every 20th POST /api/v1/vision/process answers another label (exactly 5%)
//   diverge-field served_at is an hour behind (a wrong clock or time zone)
// Usage: node typescript_server.js PORT   (prints "listening PORT" once bound)
'use strict';
const http = require('http');
const crypto = require('crypto');

const LABELS = ['cat', 'dog', 'bus'];
const MODES = new Set(['ok', 'diverge5', 'diverge-field']);
let mode = 'ok';
let tasksTotal = 0;
let processed = 0;

function stamp() {
  const now = mode === 'diverge-field' ? Date.now() - 3600 * 1000 : Date.now();
  return new Date(now).toISOString();
}

function common() {
  return { request_id: crypto.randomUUID(), served_at: stamp(),
           uptime_s: Math.floor(process.uptime()) };
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json',
                          'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function handle(req, res, raw) {
  const started = Date.now();
  const route = `${req.method} ${req.url.split('?')[0]}`;
  if (route === 'POST /_mode') {
    const wanted = JSON.parse(raw.toString() || '{}').mode;
    if (!MODES.has(wanted)) return send(res, 400, { error: `mode ${wanted}` });
    mode = wanted;
    processed = 0;
    return send(res, 200, { mode });
  }
  if (route === 'GET /health') return send(res, 200, { status: 'ok', ...common() });
  if (route === 'GET /api/v1/vision/metrics') {
    return send(res, 200, { status: 'ok', models: ['resnet50', 'yolov8'],
                            tasks_total: tasksTotal, ...common() });
  }
  if (route === 'GET /api/v1/vision/models') {
    return send(res, 200, { models: [{ name: 'resnet50', classes: 1000 },
                                     { name: 'yolov8', classes: 80 }], ...common() });
  }
  if (route === 'POST /api/v1/vision/process') {
    let request;
    try { request = JSON.parse(raw.toString()); } catch (e) {
      return send(res, 400, { error: 'not json', ...common() });
    }
    tasksTotal += 1;
    processed += 1;
    const digest = crypto.createHash('sha256').update(raw).digest();
    let label = LABELS[digest[0] % 3];
    if (mode === 'diverge5' && processed % 20 === 0) label = 'zebra';
    return send(res, 200, { ...common(), model: request.model || 'resnet50',
                            result: { label, confidence: (50 + digest[1] % 50) / 100 },
                            processing_ms: Date.now() - started });
  }
  return send(res, 404, { error: 'not found' });
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => handle(req, res, Buffer.concat(chunks)));
});
server.listen(Number(process.argv[2]), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
