-- The filesystem operations the workflows need beyond io.open, over the
-- module's helpers (pht.mkdtemp, pht.mkdir, pht.remove_tree, pht.list_dir,
-- pht.write_file). `sh` is for the demo's stand-in run only.
local pht = require "pht"

local M = {}

-- File modes, written as the octal digits chmod takes.
M.MODE_DIR = tonumber("755", 8)          -- a directory anyone may read
M.MODE_FILE = tonumber("644", 8)         -- a file anyone may read
M.MODE_PRIVATE_DIR = tonumber("700", 8)  -- a directory only its owner may enter
M.MODE_PRIVATE_FILE = tonumber("600", 8) -- a file only its owner may read

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = q

-- Run a shell command; its output, or nil and the output. LuaJIT's popen
-- close() does not report the status, so the shell appends it.
local function sh(cmd)
  local p = io.popen("{ " .. cmd .. "\n} 2>&1; echo \"__pht_status=$?\"", "r")
  if not p then return nil, "cannot run /bin/sh" end
  local out = p:read("*a")
  p:close()
  local body, status = out:match("^(.*)__pht_status=(%d+)\n$")
  if not body then return nil, out end
  if tonumber(status) ~= 0 then return nil, (body:gsub("%s+$", "")) end
  return body
end
M.sh = sh

-- A new directory only the current user can enter (mode 0700) under
-- `parent` (default $TMPDIR or /tmp). Returns its path or nil, message.
function M.mkdtemp(parent)
  if parent == "" then parent = nil end
  return pht.mkdtemp(parent)
end

-- mkdir -p with a mode for the directories it creates (default 0755).
function M.mkdir_p(path, mode)
  return pht.mkdir(path, mode or M.MODE_DIR, true)
end

-- Remove a file or a whole tree; symlinks are removed, never followed.
function M.remove_tree(path)
  return pht.remove_tree(path)
end

-- Everything under dir: { {path = rel, type = "file" | "dir" | "other"} ... },
-- parents before their children, each directory's entries sorted bytewise
-- (sort files with pht.walk_sort). Symbolic links are "other": never followed.
function M.list_tree(dir)
  local entries = {}
  local function walk(abs, rel)
    local list, err = pht.list_dir(abs)
    if not list then return nil, err end
    for _, e in ipairs(list) do
      local path = rel and (rel .. "/" .. e.name) or e.name
      local kind = (e.type == "file" or e.type == "dir") and e.type or "other"
      entries[#entries + 1] = { path = path, type = kind }
      if kind == "dir" then
        local ok, werr = walk(abs .. "/" .. e.name, path)
        if not ok then return nil, werr end
      end
    end
    return true
  end
  local ok, err = walk(dir, nil)
  if not ok then return nil, err end
  return entries
end

-- True when path exists (a file or a directory).
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- A small file's content (a key, a config): nil and a message when it is
-- larger than max bytes, so a wrong path never fills memory.
function M.read(path, max)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read(max + 1) or ""
  f:close()
  if #s > max then return nil, string.format("%s is larger than %d bytes", path, max) end
  return s
end

function M.write(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  f:close()
  if not ok then return nil, werr end
  return true
end

-- Write a file that only its owner can read (mode 0600 from the first byte).
-- Refuses to overwrite an existing file unless `force`.
function M.write_private(path, data, force)
  if M.exists(path) then
    if not force then return nil, path .. " already exists" end
    os.remove(path)
  end
  return pht.write_file(path, data, M.MODE_PRIVATE_FILE)
end

return M
