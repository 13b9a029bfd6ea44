-- Shared helpers for libpht's busted specs. Loaded by .busted before every
-- spec file; also `require "helpers"` from a spec for the functions below.
local M = {}

M.root = os.getenv("PHT_SOURCE_DIR") or "."
M.build = os.getenv("PHT_BUILD_DIR") or (M.root .. "/build")
M.fixtures = M.root .. "/spec/fixtures"
M.vectors = M.fixtures .. "/reference-v2"
M.abi = jit and "5.1" or _VERSION:match("%d+%.%d+")

-- The freshly built module for this engine comes first on the search path.
package.cpath = M.build .. "/lua/" .. M.abi .. "/?.so;" .. package.cpath
package.path = M.root .. "/lua/?.lua;" .. M.root .. "/lua/?/init.lua;" .. M.root .. "/spec/?.lua;"
  .. M.root .. "/spec/?/init.lua;" .. package.path

function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function M.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- Replace the one occurrence of `from` in the file by `to` (same length, so
-- every offset and size stays: what a tamper with write access does).
function M.replace_bytes(path, from, to)
  assert(#from == #to, "replace_bytes: same length only")
  local text = M.read(path)
  local at = assert(text:find(from, 1, true), "replace_bytes: not found")
  assert(text:find(from, at + 1, true) == nil, "replace_bytes: more than once")
  M.write(path, text:sub(1, at - 1) .. to .. text:sub(at + #from))
end

-- Quote one argument for /bin/sh.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a shell command; returns ok, combined stdout+stderr.
-- LuaJIT's popen close() says true whatever the exit status, so the shell
-- reports the status after the output and both engines read it from there.
function M.sh(cmd)
  local p = assert(io.popen("{ " .. cmd .. "\n} 2>&1; echo \"__pht_status=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.*)__pht_status=(%d+)\n$")
  if not body then return false, out end
  return tonumber(status) == 0, body
end

-- Run a shell command; returns ok, its stdout, its stderr, kept apart so
-- that what a tool warns about (dockerd's "WARNING: IPv4 forwarding is
-- disabled." on docker create) never lands in what a caller parses.
function M.sh_split(cmd)
  local errfile = os.tmpname()
  local p = assert(io.popen("{ " .. cmd .. "\n} 2>" .. M.q(errfile) .. "; echo \"__pht_status=$?\"", "r"))
  local out = p:read("*a")
  p:close()
  local f = io.open(errfile, "rb")
  local err = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(errfile)
  local body, status = out:match("^(.*)__pht_status=(%d+)\n$")
  if not body then return false, out, err end
  return tonumber(status) == 0, body, err
end

-- Run a shell command and return its stdout alone; fail the spec with both
-- streams if it fails.
function M.stdout(cmd)
  local ok, out, err = M.sh_split(cmd)
  if not ok then error("command failed: " .. cmd .. "\n" .. out .. err, 2) end
  return out
end

-- Run a shell command and fail the spec with its output if it fails.
function M.run(cmd)
  local ok, out = M.sh(cmd)
  if not ok then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

-- A fresh, empty scratch directory under the build tree. mktemp picks the
-- name: busted reloads this module for every spec file, so a counter kept
-- here would repeat names across files.
function M.tmpdir()
  local base = M.build .. "/spec-tmp"
  M.run("mkdir -p " .. M.q(base))
  local dir = M.run("mktemp -d " .. M.q(base .. "/" .. (jit and "jit" or "lua") .. ".XXXXXXXX"))
  return (dir:gsub("%s+$", ""))
end

-- Mount a tmpfs of `size` (mount's size=, "3m") on dir, for a disk that
-- fills. Needs root; returns false, why when it cannot mount (for pending).
function M.mount_tmpfs(dir, size)
  if not M.run("id -u"):match("^0\n") then return false, "needs root to mount a small tmpfs" end
  M.run("mkdir -p " .. M.q(dir))
  local ok, out = M.sh("mount -t tmpfs -o size=" .. size .. " tmpfs " .. M.q(dir))
  if not ok then return false, "mount -t tmpfs is not permitted here: " .. out end
  return true
end

-- Unmount what mount_tmpfs mounted, and fail the spec when that fails: a
-- handle still open on the tmpfs keeps it busy, and it would stay mounted
-- under the build tree after the run.
function M.umount(dir)
  local ok, out = M.sh("umount " .. M.q(dir))
  if not ok then error("umount " .. dir .. " failed (a file on it is still open?): " .. out, 2) end
end

function M.sha256_file(path)
  return (M.run("sha256sum " .. M.q(path)):match("^(%x+)"))
end

function M.key_path(name)
  return M.vectors .. "/keys/" .. name .. ".pem"
end

return M
