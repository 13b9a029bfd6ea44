-- Start and stop the example gateway (examples/openresty/) on real nginx for
-- the specs and the load run: render its nginx.conf template into a fresh
-- prefix directory, start nginx on a free 127.0.0.1 port, wait for
-- GET /health, and stop it again by the pid file.
--
--   local nginx = require "support.nginx"
--   local ok, why = nginx.available()
--   if not ok then return pending(why) end
--   local gw = assert(nginx.start({ stations = { {id = "station_1", private_key = path} } }))
--   finally(function() gw:stop() end)            -- or in teardown
--   local status, body = gw:post("/trains/verify?station=station_1", "train.tar")
local helpers = require "helpers"

local q = helpers.q
local M = {}

M.modules = "/usr/lib/nginx/modules"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function is_root()
  local ok, out = helpers.sh("id -u")
  return ok and out:match("^0%s*$") ~= nil
end

-- true when nginx, its Lua module, curl and the LuaJIT build of pht are
-- there; false, reason otherwise (for pending).
function M.available()
  if not helpers.sh("command -v nginx") then return false, "nginx is not installed (tools/install-deps.sh --test)" end
  if not helpers.sh("command -v curl") then return false, "curl is not installed" end
  for _, m in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
    if not exists(M.modules .. "/" .. m) then
      return false, M.modules .. "/" .. m .. " is missing (libnginx-mod-http-lua)"
    end
  end
  if not exists(helpers.build .. "/lua/5.1/pht.so") then
    return false, "no LuaJIT build of the module at " .. helpers.build .. "/lua/5.1/pht.so"
  end
  return true
end

-- A Lua literal for the gateway configuration file.
local function literal(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t ~= "table" then error("cannot write a " .. t .. " into the gateway configuration") end
  local out, inner = {}, indent .. "  "
  for i = 1, #v do out[#out + 1] = inner .. literal(v[i], inner) .. "," end
  local keys = {}
  for k in pairs(v) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do out[#out + 1] = inner .. k .. " = " .. literal(v[k], inner) .. "," end
  return "{\n" .. table.concat(out, "\n") .. "\n" .. indent .. "}"
end

-- State of a process from /proc: nil when gone, else its state letter.
local function proc_state(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return nil end
  local s = f:read("*l") or ""
  f:close()
  return s:match("^%d+ %b() (%a)")
end

-- Exited (or a zombie nobody reaped yet).
local function gone(pid)
  local st = proc_state(pid)
  return st == nil or st == "Z" or st == "X"
end

local function read_pid(file)
  local f = io.open(file, "r")
  if not f then return nil end
  local pid = f:read("*l")
  f:close()
  return pid and pid:match("^(%d+)%s*$")
end

local function children(pid)
  local ok, out = helpers.sh("ps -o pid= --ppid " .. pid)
  local list = {}
  if ok then for p in out:gmatch("%d+") do list[#list + 1] = p end end
  return list
end

local function sleep(s) helpers.sh("sleep " .. s) end

local Gateway = {}
Gateway.__index = Gateway

-- The worker processes' pids (children of the master).
function Gateway:workers()
  return self.pid and children(self.pid) or {}
end

-- Stop nginx: TERM to the master from the pid file, wait up to 10 s, then
-- KILL the master and every worker it had. Safe to call twice.
function Gateway:stop()
  local pid = self.pid or read_pid(self.pid_file)
  if not pid or self.stopped then self.stopped = true return true end
  self.stopped = true
  local workers = children(pid)
  helpers.sh("kill -TERM " .. pid)
  for _ = 1, 100 do
    if gone(pid) then break end
    sleep(0.1)
  end
  if not gone(pid) then helpers.sh("kill -KILL " .. pid) end
  for _, w in ipairs(workers) do
    if not gone(w) then helpers.sh("kill -KILL " .. w) end
  end
  return true
end

-- The last lines of the gateway's error log, for failure messages.
function Gateway:log_tail(n)
  local ok, out = helpers.sh("tail -n " .. (n or 20) .. " " .. q(self.prefix .. "/logs/error.log"))
  return ok and out or ""
end

-- curl: method, path (with query), body file or nil, extra curl arguments.
-- Returns HTTP status (number), body text, headers text.
function Gateway:request(method, path, body_file, extra)
  local dir = self.prefix .. "/client"
  helpers.sh("mkdir -p " .. q(dir))
  self.n = (self.n or 0) + 1
  local out, hdr = dir .. "/" .. self.n .. ".body", dir .. "/" .. self.n .. ".headers"
  local cmd = "curl -sS --max-time 120 -X " .. method .. " -o " .. q(out) .. " -D " .. q(hdr)
    .. " -w '%{http_code}' " .. (extra or "")
  if body_file then
    cmd = cmd .. " -H 'Content-Type: application/x-tar' --data-binary @" .. q(body_file)
  end
  local ok, code = helpers.sh(cmd .. " " .. q(self.url .. path))
  if not ok then error("curl failed: " .. code .. "\n" .. self:log_tail(), 2) end
  local body, headers = helpers.read(out), helpers.read(hdr)
  os.remove(out)
  os.remove(hdr)
  return tonumber(code:match("(%d+)%s*$")), body, headers
end

function Gateway:get(path) return self:request("GET", path) end
function Gateway:post(path, body_file, extra) return self:request("POST", path, body_file, extra) end

-- Start the gateway. opts:
--   stations (list of {id=, private_key=, password_file=}), default_station,
--   max_jobs, queue_timeout, job_time_limit, station_script, masters: the gateway
--   configuration; max_body (default "64m"), workers (1), threads (2),
--   dir (prefix directory; default a fresh helpers.tmpdir()); unhealthy =
--   true to accept a gateway whose /health answers 503.
-- Returns a Gateway {url, port, prefix, pid, pid_file, config, log_start (the
-- byte of logs/error.log where this nginx's lines begin)} or nil, reason;
-- on failure nothing is left running.
function M.start(opts)
  local ok, why = M.available()
  if not ok then return nil, why end
  local prefix = opts.dir or helpers.tmpdir()
  if prefix:sub(1, 1) ~= "/" then prefix = helpers.run("pwd"):gsub("%s+$", "") .. "/" .. prefix end
  local root = is_root()
  local tmpdir = prefix .. "/tmp"
  helpers.run("mkdir -p -m 0700 " .. q(tmpdir))
  -- nginx started as root runs its workers as nobody, as a station would
  -- run them as an unprivileged user: let it into the prefix (scratch
  -- directories are 0700) and give it the gateway's tmpdir.
  if root then
    helpers.run("chmod 0755 " .. q(prefix))
    helpers.run("chown nobody " .. q(tmpdir))
  end

  local cfg = {
    stations = opts.stations,
    default_station = opts.default_station,
    tmpdir = tmpdir,
    max_jobs = opts.max_jobs,
    queue_timeout = opts.queue_timeout,
    job_time_limit = opts.job_time_limit,
    station_script = opts.station_script,
    masters = opts.masters,
  }
  local config_path = prefix .. "/gateway.conf.lua"
  helpers.write(config_path, "return " .. literal(cfg) .. "\n")

  local lua = jit and "luajit" or "lua5.4"
  local gw = setmetatable({ prefix = prefix, pid_file = prefix .. "/logs/nginx.pid",
    config = config_path }, Gateway)
  local last
  math.randomseed(os.time() + tonumber(tostring(gw):match("0x(%x+)") or "0", 16) % 1000003)
  for _ = 1, 5 do
    local port = math.random(20000, 49999)
    if not helpers.sh("(exec 3<>/dev/tcp/127.0.0.1/" .. port .. ") 2>/dev/null") then
      local args = {
        "--prefix", prefix, "--config", config_path, "--listen", "127.0.0.1:" .. port,
        "--build", helpers.build, "--pht-lua", helpers.root .. "/lua",
        "--pht-scripts", helpers.root .. "/scripts", "--max-body", opts.max_body or "64m",
        "--workers", tostring(opts.workers or 1), "--threads", tostring(opts.threads or 2),
        "--modules", M.modules, "--log-level", "info",
      }
      if root then args[#args + 1] = "--user" args[#args + 1] = "nobody nogroup" end
      for i, a in ipairs(args) do args[i] = q(a) end
      helpers.run(lua .. " " .. q(helpers.root .. "/examples/openresty/render.lua") .. " "
        .. table.concat(args, " "))
      -- Where this attempt's lines start in the error log (an earlier
      -- attempt on a port in use logged its bind errors there).
      local log = io.open(prefix .. "/logs/error.log", "rb")
      gw.log_start = log and log:seek("end") or 0
      if log then log:close() end
      local started, out = helpers.sh("nginx -p " .. q(prefix) .. " -c conf/nginx.conf")
      if started then
        gw.port, gw.url = port, "http://127.0.0.1:" .. port
        local health = "curl -sS -o /dev/null --max-time 1 " .. (opts.unhealthy and "" or "-f ")
        for _ = 1, 100 do
          gw.pid = read_pid(gw.pid_file)
          if gw.pid and helpers.sh(health .. q(gw.url .. "/health")) then return gw end
          sleep(0.1)
        end
        local _, answer = helpers.sh("curl -sS --max-time 5 " .. q(gw.url .. "/health"))
        last = "nginx started but GET /health did not answer " .. (opts.unhealthy and "" or "200 ")
          .. "within 10 s; it answers: " .. tostring(answer) .. "\n" .. gw:log_tail(200):gsub("[^\n]*closed keepalive connection\n", "")
        gw:stop()
        return nil, last
      end
      last = out
      if not out:match("Address already in use") then break end
    end
  end
  return nil, "nginx did not start: " .. tostring(last)
end

return M
