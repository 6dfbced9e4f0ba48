//! A minimal Rust Vision Resource Manager (std only) serving the backend API vrm expects of a
//! team's real service: GET /health, GET /metrics (Prometheus text with the seed's
//! `vision_manager_*` names) and GET /api/v1/vision/metrics. It exists so the production
//! Dockerfile (docker/Dockerfile) is built and run by a test. It runs no models: the vision
//! metrics call waits WORK_MS (default 1, the rust rehearsal profile's median) in place of a
//! real service's work, so `vrm validate`'s speed check compares something.

use std::env;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BACKEND: &str = "rust";
/// The rehearsal backend's histogram buckets (seconds).
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct Config {
    max_vram_gb: f64,
    work: Duration,
    started: Instant,
}

/// Served vision tasks: a count and a cumulative histogram of their durations.
#[derive(Default)]
struct Tasks {
    count: u64,
    buckets: [u64; 13],
    sum_seconds: f64,
}

impl Tasks {
    fn record(&mut self, seconds: f64) {
        self.count += 1;
        self.sum_seconds += seconds;
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }
}

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env::var(name) {
        Ok(raw) => raw.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}={raw}: not a valid value");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

fn main() {
    let port: u16 = setting("PORT", 3001);
    let config = Arc::new(Config {
        max_vram_gb: setting("MAX_VRAM_GB", 20.0),
        work: Duration::from_millis(setting("WORK_MS", 1)),
        started: Instant::now(),
    });
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|err| {
        eprintln!("cannot listen on port {port}: {err}");
        std::process::exit(1)
    });
    eprintln!("vision-manager ({BACKEND}) listening on :{port}");
    let tasks = Arc::new(Mutex::new(Tasks::default()));
    for stream in listener.incoming().flatten() {
        let (config, tasks) = (Arc::clone(&config), Arc::clone(&tasks));
        thread::spawn(move || {
            let _ = serve(stream, &config, &tasks);
        });
    }
}

/// One connection: HTTP/1.1 keep-alive (HTTP/1.0 closes unless asked to keep it).
fn serve(stream: TcpStream, config: &Config, tasks: &Mutex<Tasks>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let target = words.next().unwrap_or("").to_string();
        let mut keep_alive = words.next() == Some("HTTP/1.1");
        let mut length: u64 = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                } else if name == "connection" {
                    keep_alive = value.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        io::copy(&mut reader.by_ref().take(length), &mut io::sink())?;
        let path = target.split('?').next().unwrap_or("");
        let (status, content_type, body) = respond(&method, path, config, tasks);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: {}\r\n\r\n",
            body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        writer.write_all(head.as_bytes())?;
        if method != "HEAD" {
            writer.write_all(body.as_bytes())?;
        }
        writer.flush()?;
        if !keep_alive {
            return Ok(());
        }
    }
}

const JSON: &str = "application/json";

fn respond(
    method: &str,
    path: &str,
    config: &Config,
    tasks: &Mutex<Tasks>,
) -> (&'static str, &'static str, String) {
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", JSON, error("method not allowed"));
    }
    let uptime = config.started.elapsed().as_secs_f64();
    match path {
        "/health" => (
            "200 OK",
            JSON,
            format!(r#"{{"status":"healthy","backend":"{BACKEND}","uptime_seconds":{uptime:.1}}}"#),
        ),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(config, &tasks.lock().unwrap()),
        ),
        "/api/v1/vision/metrics" => {
            let begun = Instant::now();
            thread::sleep(config.work);
            let mut tasks = tasks.lock().unwrap();
            tasks.record(begun.elapsed().as_secs_f64());
            let body = format!(
                r#"{{"backend":"{BACKEND}","status":"healthy","uptime_seconds":{uptime:.1},"tasks_total":{},"tasks_failed":0,"vram_used_gb":0.0,"max_vram_gb":{},"models_loaded":[],"api_version":"v1"}}"#,
                tasks.count, config.max_vram_gb
            );
            ("200 OK", JSON, body)
        }
        _ => ("404 Not Found", JSON, error("not found")),
    }
}

fn error(message: &str) -> String {
    format!(r#"{{"error":"{message}"}}"#)
}

/// The seed's metric names, labelled `backend` as the rehearsal backend labels them.
fn metrics(config: &Config, tasks: &Tasks) -> String {
    let labels = format!(r#"backend="{BACKEND}",task="metrics""#);
    let mut text = String::from(
        "# HELP vision_manager_task_duration_seconds Vision task execution time\n\
         # TYPE vision_manager_task_duration_seconds histogram\n",
    );
    for (bound, count) in BUCKETS.iter().zip(tasks.buckets) {
        text += &format!("vision_manager_task_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}\n");
    }
    text += &format!(
        "vision_manager_task_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}\n\
         vision_manager_task_duration_seconds_sum{{{labels}}} {sum}\n\
         vision_manager_task_duration_seconds_count{{{labels}}} {count}\n\
         # HELP vision_manager_tasks_total Vision tasks processed\n\
         # TYPE vision_manager_tasks_total counter\n\
         vision_manager_tasks_total{{backend=\"{BACKEND}\",status=\"success\"}} {count}\n\
         vision_manager_tasks_total{{backend=\"{BACKEND}\",status=\"error\"}} 0\n\
         # HELP vision_manager_vram_used_gb VRAM in use (no models loaded)\n\
         # TYPE vision_manager_vram_used_gb gauge\n\
         vision_manager_vram_used_gb{{backend=\"{BACKEND}\"}} 0\n\
         # HELP vision_manager_vram_limit_gb VRAM limit (MAX_VRAM_GB)\n\
         # TYPE vision_manager_vram_limit_gb gauge\n\
         vision_manager_vram_limit_gb{{backend=\"{BACKEND}\"}} {limit}\n\
         # HELP vision_manager_models_loaded Models resident in VRAM\n\
         # TYPE vision_manager_models_loaded gauge\n\
         vision_manager_models_loaded{{backend=\"{BACKEND}\"}} 0\n",
        count = tasks.count,
        sum = tasks.sum_seconds,
        limit = config.max_vram_gb,
    );
    text
}
