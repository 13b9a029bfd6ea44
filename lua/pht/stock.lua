-- The stock workflows (scripts/pre_run.lua, post_run.lua, build.lua,
-- decrypt_results.lua): where they are and loading them. Everything that
-- runs a stock workflow (the `pht` command, pht.verify and with it the
-- gateway) goes through here, so there is one search rule:
--
--   1. $PHT_SCRIPTS_DIR, when set (and then only there);
--   2. the source tree: scripts/ beside lua/, the directory holding pht/;
--   3. an installed tree: libpht-scripts/ beside lua/ in the data directory
--      (PREFIX/share/lua/<abi>/pht/ and PREFIX/share/libpht-scripts/, as
--      CMakeLists.txt installs them; the build tree mirrors that layout).
--
-- Rules 2 and 3 are taken from where this file was loaded from, so the
-- tree is found with the module and nothing needs to be put on
-- package.path. doc/workflow.md describes the rule for operators.
local M = {}

-- The directory part of a path ("." for a bare name).
local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

local function join(dir, name)
  if dir == "/" then return "/" .. name end
  return dir .. "/" .. name
end

-- This file's directory (…/pht), from the chunk's source name.
local function module_dir()
  local source = debug.getinfo(1, "S").source
  if source:sub(1, 1) ~= "@" then return nil end
  return dirname(source:sub(2))
end

-- The directories searched, in the rule's order.
function M.dirs()
  local env = os.getenv("PHT_SCRIPTS_DIR")
  if env and env ~= "" then return { env } end
  local here = module_dir()
  if not here then return {} end
  local lua_dir = dirname(here) -- lua/ of the source tree, share/lua/<abi> installed
  local dirs = { join(dirname(lua_dir), "scripts") }
  local share = lua_dir:match("^(.*)/lua/[^/]+$")
  if share then dirs[#dirs + 1] = join(share, "libpht-scripts") end
  return dirs
end

local function readable(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- The path of stock workflow `name` ("pre_run", "post_run", ...), or nil
-- and a message saying where it was looked for.
function M.find(name)
  local dirs = M.dirs()
  for _, dir in ipairs(dirs) do
    local path = join(dir, name .. ".lua")
    if readable(path) then return path end
  end
  return nil, string.format("cannot find the stock workflow %s.lua (looked in: %s; set PHT_SCRIPTS_DIR)",
    name, #dirs > 0 and table.concat(dirs, ", ") or "nowhere")
end

-- Compiled chunks, per path. Running a chunk builds a fresh workflow, so
-- changing one never changes the next.
local chunks = {}

-- A fresh workflow from the script at `path`, or nil and a message.
function M.load_file(path)
  local chunk = chunks[path]
  if not chunk then
    local err
    chunk, err = loadfile(path)
    if not chunk then return nil, "cannot load " .. path .. ": " .. tostring(err) end
    chunks[path] = chunk
  end
  local ok, wf = pcall(chunk)
  if not ok then return nil, path .. " failed to build its workflow: " .. tostring(wf) end
  if type(wf) ~= "table" or type(wf.run) ~= "function" then
    return nil, path .. " does not return a workflow"
  end
  return wf
end

-- A fresh copy of stock workflow `name`: pht.stock.load("pre_run").
function M.load(name)
  local path, err = M.find(name)
  if not path then return nil, err end
  return M.load_file(path)
end

return M
