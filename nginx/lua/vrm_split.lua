-- vrm_split: the rust/typescript split in nginx shared memory, changed without a reload.
--
-- One dict key, "split" = "GENERATION:RUST", is the whole state: a change is one atomic
-- `set` every worker sees on its next request. vrm writes the split to a file in the state
-- dir (fsynced) before it sets it here, and init() loads that file at every start and
-- reload, so the disk stays the truth: a restart serves the last written split.
--
-- Phases: init() in init_by_lua (master), pick() in set_by_lua (rewrite phase, once per
-- request: it freezes the split for the request and names the upstream pool), served() and
-- set() in content_by_lua on the loopback status listener; balance() / attempt() in the
-- pools' balancer_by_lua, done() in log_by_lua and worker_start() in init_worker_by_lua
-- count the requests in flight per backend.

local M = {}
local floor = math.floor
-- Filled in the master by init() and inherited by fork: each worker knows the config
-- generation of the cycle it belongs to (what a reload is verified by).
local cfg = { file = nil, token = "", config = 0, secret = "", canary = nil,
              upstream_ms = 30000, canary_ms = 30000, counted = false }

-- A change may move the generation forward by at most this much: a caller cannot push it
-- so far that later changes (and `%d` formatting) break.
local MAX_STEP = 1000000

local POOLS = {
    rust_first = "vrm_rust_first",            -- rust, typescript as the fallback (backup)
    typescript_first = "vrm_typescript_first",  -- typescript, rust as the fallback
    typescript_only = "vrm_typescript_only",    -- rust 0: no request, no retry reaches rust
}

local function dict()
    return ngx.shared.vrm
end

local function decode(value)
    if not value then return nil end
    local g, r = value:match("^(%d+):(%d+)$")
    if not g then return nil end
    return tonumber(g), tonumber(r)
end

-- The key that signs split changes: a 0600 file in the state dir, read by the master (it
-- runs init) before the workers drop privileges, so only the state dir's owner and the
-- master ever hold it. Never served.
local function read_secret(path)
    if not path then return "" end
    local fh = io.open(path, "r")
    if not fh then return "" end
    local text = fh:read("*a") or ""
    fh:close()
    return (text:gsub("%s+$", ""))
end

local function read_file(path)
    local fh = io.open(path, "r")
    if not fh then return nil end
    local text = fh:read("*a")
    fh:close()
    local g, r = text:match("^%s*(%d+)%s+(%d+)")
    if not g or tonumber(r) > 100 then return nil end
    return tonumber(g), tonumber(r)
end

-- init_by_lua (master, at start, every reload and `nginx -t`). A new master (empty dict)
-- loads the split: the higher generation of the split file and the config's own default.
-- A reload never touches the dict: nginx runs this before it knows whether the new config
-- will load (a bind can still fail), and a refused config must change nothing; vrm sets the
-- split over /vrm/split once the reload is verified.
function M.init(opts)
    cfg.file = opts.file
    cfg.token = opts.token or ""
    cfg.config = opts.generation or 0
    cfg.secret = read_secret(opts.secret_file)
    cfg.canary = opts.canary  -- {rust = {ip, port}, typescript = {ip, port}} or nil
    cfg.upstream_ms = opts.upstream_ms or cfg.upstream_ms
    cfg.canary_ms = opts.canary_ms or cfg.upstream_ms
    cfg.counted = opts.in_flight == true  -- this config wires the counting phases below
    if dict():get("split") then return end
    local g, r = opts.generation or 0, opts.rust or 0
    local fg, fr = read_file(opts.file)
    if fg and fg >= g then g, r = fg, fr end
    dict():set("split", g .. ":" .. r)
end

-- set_by_lua_block $vrm_pool: which pool serves this request. A shared counter spreads rust
-- picks evenly over all workers (Bresenham): over any n requests rust gets n*r/100, rounded.
function M.pick()
    if ngx.is_subrequest then  -- a parity mirror: it picks no pool and must not move the counter
        return POOLS.typescript_only
    end
    local g, r = decode(dict():get("split"))
    g, r = g or 0, r or 0
    ngx.ctx.vrm_generation = g
    if r <= 0 then return POOLS.typescript_only end
    if r >= 100 then return POOLS.rust_first end
    local n = dict():incr("seq", 1, 0)
    if n >= 1e12 then dict():set("seq", 0) end
    if floor(n * r / 100) > floor((n - 1) * r / 100) then return POOLS.rust_first end
    return POOLS.typescript_first
end

-- Requests in flight per backend: how many wait on rust and on typescript now, so a hang
-- is blamed on the backend that hangs (nginx's stub_status counts all upstreams at once).
-- An attempt counts on the backend its pool sends it to when the balancer runs (a retry
-- moves it to the other backend); the log phase takes it off. Each worker counts under its
-- own pid ("f:PID:rust"): a worker that dies (crash, kill) never takes its requests off,
-- so served() sums only live workers of the answering worker's master and deletes a dead
-- one's keys. No counter can drift past the life of its worker.
local keys  -- this worker's keys: made in the worker (fork copies the master's nil)

local function own_keys()
    if not keys then
        local pid = ngx.worker.pid()
        keys = { rust = "f:" .. pid .. ":rust", typescript = "f:" .. pid .. ":typescript" }
    end
    return keys
end

-- init_worker_by_lua: a new worker starts at 0, even on a pid a dead worker left counts on.
function M.worker_start()
    local k = own_keys()
    dict():set(k.rust, 0)
    dict():set(k.typescript, 0)
end

-- This request's attempt now waits on `backend`: off the one it waited on before, if any.
local function waiting_on(ctx, backend)
    local was = ctx.vrm_on
    if was == backend then return end
    local k, d = own_keys(), dict()
    if was then d:incr(k[was], -1, 0) end
    d:incr(k[backend], 1, 0)
    ctx.vrm_on = backend
end

-- balancer_by_lua of a pool nginx balances itself: attempt n goes to the pool's n-th server
-- (its first, then its backup). Picks no peer: nginx's round robin does, as without it.
-- (Only while typescript is out after max_fails does typescript-first's first attempt go
-- to rust; it is counted on typescript then.)
function M.attempt(first, second)
    local ctx = ngx.ctx
    local n = (ctx.vrm_attempt or 0) + 1
    ctx.vrm_attempt = n
    waiting_on(ctx, n > 1 and second or first)
end

-- log_by_lua (every request): whatever it waited on, it no longer does.
function M.done()
    local ctx = ngx.ctx
    local on = ctx.vrm_on
    if on then
        ctx.vrm_on = nil
        dict():incr(own_keys()[on], -1, 0)
    end
end

-- A process's state letter and parent pid from /proc (nil: no such process, or no /proc).
local function proc_stat(pid)
    local fh = io.open("/proc/" .. pid .. "/stat", "r")
    if not fh then return nil end
    local text = fh:read("*l") or ""
    fh:close()
    local state, parent = text:match(".*%) (%a) (%d+)")  -- after the last ")": the name may hold one
    return state, tonumber(parent)
end

-- Whose counts a worker's are: "ours" (a live worker of `master`), "dead", or "other" (a
-- live process of another parent: its pid was reused, or another master's worker).
local function owner(pid, master)
    local state, parent = proc_stat(pid)
    if state == nil or state == "Z" or state == "X" then return "dead" end
    return parent == master and "ours" or "other"
end

-- {rust = N, typescript = M} over the live workers of this master (every worker's where
-- there is no /proc to tell).
local function in_flight()
    local d = dict()
    local _, master = proc_stat("self")
    local sums, owners = { rust = 0, typescript = 0 }, {}
    for _, key in ipairs(d:get_keys(0)) do
        local pid, backend = key:match("^f:(%d+):(%a+)$")
        if pid and sums[backend] then
            local whose = "ours"
            if master then
                whose = owners[pid] or owner(pid, master)
                owners[pid] = whose
            end
            if whose == "dead" then
                d:delete(key)  -- the worker died holding it
            elseif whose == "ours" then
                sums[backend] = sums[backend] + math.max(0, d:get(key) or 0)
            end
        end
    end
    return sums
end

-- The canary's read timeout (ms): what a rust attempt may take before nginx gives up on it
-- and (when the request may be repeated) retries it on typescript. vrm sets it with the
-- split (derived from typescript's measured latency); a new master starts with the config's.
local function canary_ms()
    return math.min(dict():get("canary_ms") or cfg.canary_ms, cfg.upstream_ms)
end

-- balancer_by_lua in the rust-first pool: rust first with the canary's timeouts, then
-- typescript (the fallback) with the full upstream timeout. A hung canary holds a client
-- no longer than the canary timeout, not PROXY_UPSTREAM_TIMEOUT. nginx's proxy_next_upstream
-- rules still decide whether the second attempt happens (never for a request that is not
-- declared safe to repeat).
function M.balance()
    local balancer = require("ngx.balancer")
    local peers = cfg.canary
    local ctx = ngx.ctx
    local attempt = (ctx.vrm_attempt or 0) + 1
    ctx.vrm_attempt = attempt
    local ok, err
    if attempt == 1 then
        ok, err = balancer.set_current_peer(peers.rust[1], peers.rust[2])
        if ok then
            local t = canary_ms() / 1000
            balancer.set_timeouts(2, t, t)
            balancer.set_more_tries(1)
            waiting_on(ctx, "rust")
        end
    else
        ok, err = balancer.set_current_peer(peers.typescript[1], peers.typescript[2])
        if ok then
            local t = cfg.upstream_ms / 1000
            balancer.set_timeouts(2, t, t)
            waiting_on(ctx, "typescript")
        end
    end
    if not ok then
        ngx.log(ngx.ERR, "vrm balancer: ", err)
        return ngx.exit(500)
    end
end

-- set_by_lua_block $vrm_generation (after pick): the generation that served this request.
function M.generation()
    return tostring(ngx.ctx.vrm_generation or 0)
end

local function reply(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(body)
    return ngx.exit(status)
end

local function state_json(g, r, extra)
    return string.format(
        '{"generation":%d,"rust":%d,"typescript":%d,"config":%d,"token":"%s","worker_pid":%d,'
        .. '"refused":%d,"refused_last":"%s","canary_ms":%d%s}',
        g, r, 100 - r, cfg.config, cfg.token, ngx.worker.pid(),
        dict():get("refused") or 0, dict():get("refused_last") or "",
        cfg.canary and canary_ms() or 0, extra or "")
end

-- A refused change is logged and counted: `vrm status` shows how many and the last reason.
local function refuse(status, why, extra)
    ngx.log(ngx.WARN, "vrm split change refused from ", ngx.var.remote_addr, ": ", why)
    dict():incr("refused", 1, 0)
    dict():set("refused_last", string.format("%d %s", ngx.time(), why))
    return reply(status, '{"error":"' .. why .. '"' .. (extra or "") .. '}')
end

-- X-VRM-Signature: base64 HMAC-SHA1 of the body with the state dir's secret. Compared in
-- constant time; no secret loaded means no change is accepted.
local function signed(body)
    local sig = ngx.req.get_headers()["x-vrm-signature"]
    if cfg.secret == "" or type(sig) ~= "string" then return false end
    local want = ngx.encode_base64(ngx.hmac_sha1(cfg.secret, body))
    if #sig ~= #want then return false end
    local diff = 0
    for i = 1, #want do
        if sig:byte(i) ~= want:byte(i) then diff = diff + 1 end
    end
    return diff == 0
end

-- The split, plus the requests in flight per backend where this config counts them. The
-- counts can never fail the read (rollback reads the split back here): on any error they
-- are left out, which reads as unknown.
function M.served()
    local g, r = decode(dict():get("split"))
    local extra
    if cfg.counted then
        local ok, sums = pcall(in_flight)
        if ok then
            extra = string.format(',"in_flight":{"rust":%d,"typescript":%d}',
                                  sums.rust, sums.typescript)
        end
    end
    return reply(200, state_json(g or 0, r or 0, extra))
end

local function int_field(body, name)
    local raw = body:match('"' .. name .. '"%s*:%s*(%-?%d+)%s*[,}]')
    return raw and tonumber(raw)
end

-- POST {"generation":N,"rust":R}, signed: vrm has written N to the split file; make it
-- live. Only a caller holding the state dir's secret may; generations only go forward, by
-- at most MAX_STEP; repeating the live one is a no-op (a retried POST is safe; replaying an
-- older signed body changes nothing).
function M.set()
    if ngx.req.get_method() ~= "POST" then
        return reply(405, '{"error":"POST {\\"generation\\":N,\\"rust\\":R}"}')
    end
    ngx.req.read_body()
    local body = ngx.req.get_body_data() or ""
    if not signed(body) then
        return refuse(403, "not signed with this state dir's secret")
    end
    local g, r = int_field(body, "generation"), int_field(body, "rust")
    if not g or g < 0 or not r or r < 0 or r > 100 then
        return reply(400, '{"error":"expected {\\"generation\\":N,\\"rust\\":0-100}"}')
    end
    if not dict():add("lock", true, 2) then
        return reply(409, '{"error":"another split change is in progress"}')
    end
    local cg, cr = decode(dict():get("split"))
    cg, cr = cg or 0, cr or 0
    if g < cg or (g == cg and r ~= cr) then
        dict():delete("lock")
        return reply(409, '{"error":"not newer than the live split","served":'
                     .. state_json(cg, cr) .. '}')
    end
    if g - cg > MAX_STEP then
        dict():delete("lock")
        return refuse(409, "generation jumps more than " .. MAX_STEP,
                      ',"served":' .. state_json(cg, cr))
    end
    local canary = int_field(body, "canary_ms")
    if canary and canary >= 100 and canary <= cfg.upstream_ms then
        dict():set("canary_ms", canary)
    end
    dict():set("split", g .. ":" .. r)
    dict():delete("lock")
    return reply(200, state_json(g, r))
end

return M
