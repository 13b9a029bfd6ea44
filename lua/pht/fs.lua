-- The few filesystem operations the workflows need beyond io.open: private
-- temporary directories, directory creation, tree removal, private files.
-- Plain Lua has no mkdir; these use the module's functions when it has them
-- (pht.mkdtemp, pht.mkdir, pht.remove_tree, pht.write_file) and the POSIX
-- tools otherwise, always with quoted arguments.
local M = {}

local ok_pht, pht = pcall(require, "pht")
if not ok_pht then pht = {} end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = q

-- Run a shell command; true, or nil and its output. LuaJIT's popen close()
-- does not report the status, so the shell appends it.
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

local function tmp_parent(parent)
  if parent and parent ~= "" then return parent end
  local env = os.getenv("TMPDIR")
  if env and env ~= "" then return env end
  return "/tmp"
end

-- A new directory only the current user can enter (mode 0700) under
-- `parent` (default $TMPDIR or /tmp). Returns its path or nil, message.
function M.mkdtemp(parent)
  parent = tmp_parent(parent)
  if pht.mkdtemp then return pht.mkdtemp(parent) end
  local out, err = sh("mktemp -d " .. q(parent .. "/pht.XXXXXXXX"))
  if not out then return nil, err end
  return (out:gsub("%s+$", ""))
end

-- mkdir -p with a mode for the directories it creates.
function M.mkdir_p(path, mode)
  if pht.mkdir then return pht.mkdir(path, mode or 493, true) end
  local out, err = sh("mkdir -p -m " .. string.format("%o", mode or 493) .. " -- " .. q(path))
  if not out then return nil, err end
  return true
end

-- Remove a file or a whole tree; symlinks are removed, never followed.
function M.remove_tree(path)
  if not path or path == "" or path == "/" then return nil, "refusing to remove " .. tostring(path) end
  if pht.remove_tree then return pht.remove_tree(path) end
  local out, err = sh("rm -rf -- " .. q(path))
  if not out then return nil, err end
  return true
end

-- Everything under dir: { {path = rel, type = "file" | "dir" | "other"} ... }
-- in no particular order (sort with pht.walk_sort).
function M.list_tree(dir)
  local out, err = sh("find " .. q(dir) .. " -mindepth 1 \\( -type f -printf 'f %P\\0' \\) "
    .. "-o \\( -type d -printf 'd %P\\0' \\) -o -printf 'o %P\\0'")
  if not out then return nil, err end
  local entries = {}
  for kind, rel in out:gmatch("(%a) ([^%z]+)%z") do
    entries[#entries + 1] = { path = rel, type = kind == "f" and "file" or kind == "d" and "dir" or "other" }
  end
  return entries
end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function M.is_dir(path)
  return sh("test -d " .. q(path)) ~= nil
end

-- Size of a regular file in bytes, or nil.
function M.size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
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

-- Write a file that only its owner can read (mode 0600) from the first
-- byte: the data goes to a 0700 directory beside the target, then is
-- renamed into place. Refuses to overwrite an existing file unless `force`.
function M.write_private(path, data, force)
  if M.exists(path) then
    if not force then return nil, path .. " already exists" end
    os.remove(path)
  end
  if pht.write_file then return pht.write_file(path, data, 384) end
  local dir = path:match("^(.*)/[^/]*$") or "."
  local tmp, err = M.mkdtemp(dir)
  if not tmp then return nil, err end
  local tmpfile = tmp .. "/f"
  local ok, werr = M.write(tmpfile, data)
  if ok then ok, werr = sh("chmod 600 " .. q(tmpfile)) end
  if ok then ok, werr = os.rename(tmpfile, path) end
  M.remove_tree(tmp)
  if not ok then return nil, werr end
  return true
end

return M
