-- Start and stop spec/support/netfault.py, the network faults the registry
-- specs put in front of a real registry: a TCP proxy that resets connections
-- after N bytes ("cut"), and an HTTP proxy that redirects blob downloads to a
-- second listener on another host name ("redirect"), an HTTP proxy that
-- answers matching requests with an error status ("status"), and an HTTP
-- server that sends a header and then holds the connection ("stall", a
-- wedged dockerd).
--
--   local netfault = require "support.netfault"
--   local p = assert(netfault.start("cut", { upstream = addr, after = 8192, cuts = 1 }))
--   finally(function() p:stop() end)
--   ... p.addr ...                        -- "127.0.0.1:PORT"
--   for _, line in ipairs(p:events()) do ... end   -- one JSON text per event
local helpers = require "helpers"

local q = helpers.q
local M = {}

M.script = helpers.root .. "/spec/support/netfault.py"

local Proxy = {}
Proxy.__index = Proxy

-- The log's lines, one JSON object each.
function Proxy:events()
  local out = {}
  local f = io.open(self.log, "r")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

-- Stop the proxy by its pid (only while that pid still runs netfault.py).
function Proxy:stop()
  if not self.pid then return end
  local pid = self.pid
  self.pid = nil
  helpers.sh("grep -q netfault.py /proc/" .. pid .. "/cmdline 2>/dev/null && kill " .. pid)
end

-- mode "cut": opts.upstream ("HOST:PORT"), opts.after (bytes), opts.cuts
-- (connections to cut; default all), opts.direction ("down" or "up").
-- mode "redirect": opts.upstream ("https://HOST:PORT"), opts.ca, opts.creds
-- (for fetching the blobs it serves), opts.redirect_host (default "localhost").
-- mode "status": opts.upstream ("http://HOST:PORT"), opts.status (503, 429, ...),
-- opts.match (a Python regex on the path), opts.times (default: every time).
-- mode "stall": no options (opts = {}).
-- Returns the proxy (addr, and for redirect storage_addr) or nil, reason.
function M.start(mode, opts)
  if not helpers.sh("command -v python3") then return nil, "python3 is not installed" end
  local dir = helpers.tmpdir()
  local self = setmetatable({ log = dir .. "/events.log", dir = dir }, Proxy)
  local args = { q(M.script), mode, "--port-file", q(dir .. "/port"), "--log", q(self.log) }
  if opts.upstream then args[#args + 1] = "--upstream " .. q(opts.upstream) end
  if mode == "cut" then
    args[#args + 1] = "--after " .. tonumber(opts.after)
    if opts.cuts then args[#args + 1] = "--cuts " .. tonumber(opts.cuts) end
    if opts.direction then args[#args + 1] = "--direction " .. q(opts.direction) end
  elseif mode == "status" then
    args[#args + 1] = "--status " .. tonumber(opts.status) .. " --match " .. q(opts.match)
    if opts.times then args[#args + 1] = "--times " .. tonumber(opts.times) end
  elseif mode == "redirect" then
    if opts.ca then args[#args + 1] = "--ca " .. q(opts.ca) end
    if opts.redirect_host then args[#args + 1] = "--redirect-host " .. q(opts.redirect_host) end
  end
  local env = opts.creds and ("NETFAULT_CREDS=" .. q(opts.creds) .. " ") or ""
  local ok, out = helpers.sh(env .. "setsid python3 " .. table.concat(args, " ")
    .. " </dev/null >" .. q(dir .. "/stderr") .. " 2>&1 & echo $!")
  self.pid = ok and out:match("(%d+)") or nil
  if not self.pid then return nil, "netfault.py did not start: " .. out end
  local port
  ok, port = helpers.sh("for i in $(seq 200); do [ -s " .. q(dir .. "/port") .. " ] && break; "
    .. "sleep 0.025; done; cat " .. q(dir .. "/port"))
  local p1, p2 = (port or ""):match("^(%d+)%s*(%d*)")
  if not (ok and p1) then
    self:stop()
    return nil, "netfault.py did not listen: " .. helpers.read(dir .. "/stderr")
  end
  self.addr = "127.0.0.1:" .. p1
  if p2 ~= "" then self.storage_addr = (opts.redirect_host or "localhost") .. ":" .. p2 end
  return self
end

return M
