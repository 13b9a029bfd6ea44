-- Render the gateway's nginx.conf template for one nginx prefix directory.
--
--   lua render.lua --prefix DIR --config FILE [options]
--
-- Writes DIR/conf/nginx.conf and creates DIR/conf and DIR/logs. Runs on any
-- Lua (5.1/LuaJIT or 5.4); nginx itself is not needed. Options:
--   --prefix DIR        nginx prefix (nginx -p DIR); required, absolute
--   --config FILE       the gateway configuration (gateway.conf.lua); required, absolute
--   --listen ADDR:PORT  where to listen (default 127.0.0.1:8080)
--   --workers N         worker processes (default 1)
--   --threads N         threads of the verification pool per worker (default 2)
--   --max-body SIZE     client_max_body_size: the largest train accepted (default 2g)
--   --user "U [G]"      user directive, for an nginx started as root (default none)
--   --build DIR         libpht build tree: pht.so from DIR/lua/5.1 (default SOURCE/build)
--   --pht-cpath DIR     directory holding the LuaJIT pht.so (overrides --build)
--   --pht-lua DIR       directory holding pht/*.lua (default SOURCE/lua)
--   --pht-scripts DIR   directory holding pre_run.lua, when it is not where
--                       pht.stock looks (beside --pht-lua); sets $PHT_SCRIPTS_DIR
--   --modules DIR|none  where ndk_http_module.so and ngx_http_lua_module.so are
--                       (default /usr/lib/nginx/modules; none for OpenResty)
--   --log-level LEVEL   error_log level (default notice)
--   --out FILE          where to write (default DIR/conf/nginx.conf)
-- SOURCE is the libpht source tree this file is in.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."

local function die(msg)
  io.stderr:write("render.lua: ", msg, "\n")
  os.exit(2)
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function abs(path)
  if path:sub(1, 1) == "/" then return path end
  local p = io.popen("pwd")
  local cwd = p:read("*l")
  p:close()
  return cwd .. "/" .. path
end

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then die(err) end
  local s = f:read("*a")
  f:close()
  return s
end

if arg[1] == "-h" or arg[1] == "--help" then
  -- The header of this file is its usage.
  for line in io.lines(arg[0]) do
    local text = line:match("^%-%- ?(.*)$")
    if not text then break end
    print(text)
  end
  os.exit(0)
end

local source = abs(here .. "/../..")
local opts = {
  listen = "127.0.0.1:8080", workers = "1", threads = "2", ["max-body"] = "2g",
  modules = "/usr/lib/nginx/modules", ["log-level"] = "notice",
}
local i = 1
while i <= #arg do
  local name = arg[i]:match("^%-%-([%w%-]+)$")
  if not name or arg[i + 1] == nil then die("usage: render.lua --prefix DIR --config FILE [--name value ...]") end
  opts[name] = arg[i + 1]
  i = i + 2
end
if not opts.prefix then die("--prefix DIR is required") end
if not opts.config then die("--config FILE is required") end
for _, k in ipairs({ "prefix", "config" }) do
  if opts[k]:sub(1, 1) ~= "/" then die("--" .. k .. " must be an absolute path") end
end
for _, k in ipairs({ "workers", "threads" }) do
  if not opts[k]:match("^%d+$") or tonumber(opts[k]) < 1 then die("--" .. k .. " must be a positive integer") end
end
if not opts["max-body"]:match("^%d+[kKmMgG]?$") then die("--max-body must be a size like 512m or 2g") end

local modules = ""
if opts.modules ~= "none" then
  modules = "load_module " .. opts.modules .. "/ndk_http_module.so;\n"
    .. "load_module " .. opts.modules .. "/ngx_http_lua_module.so;"
end

local values = {
  load_modules = modules,
  user = opts.user and ("user " .. opts.user .. ";") or "",
  workers = opts.workers,
  threads = opts.threads,
  prefix = opts.prefix,
  log_level = opts["log-level"],
  listen = opts.listen,
  max_body = opts["max-body"],
  config = opts.config,
  gateway_lua = source .. "/examples/openresty/lua",
  pht_lua = opts["pht-lua"] and abs(opts["pht-lua"]) or (source .. "/lua"),
  pht_scripts = opts["pht-scripts"] and abs(opts["pht-scripts"]) or "",
  pht_cpath = opts["pht-cpath"] and abs(opts["pht-cpath"])
    or ((opts.build and abs(opts.build) or (source .. "/build")) .. "/lua/5.1"),
}
for k, v in pairs(values) do
  -- Paths end up inside nginx strings and Lua strings: keep them plain.
  if v:find('["\\;{}]') and k ~= "load_modules" and k ~= "user" then
    die(k .. " must not contain quotes, backslashes, ';' or braces: " .. v)
  end
end

values.scripts_env = values.pht_scripts ~= "" and ("env PHT_SCRIPTS_DIR=" .. values.pht_scripts .. ";") or ""

local text = read(here .. "/nginx.conf"):gsub("{{([%w_]+)}}", function(name)
  local v = values[name]
  if v == nil then die("nginx.conf has an unknown placeholder {{" .. name .. "}}") end
  return v
end)

local ok = os.execute("mkdir -p " .. shell_quote(opts.prefix .. "/conf") .. " " .. shell_quote(opts.prefix .. "/logs"))
if ok ~= true and ok ~= 0 then die("cannot create " .. opts.prefix .. "/conf and /logs") end
local out = opts.out or (opts.prefix .. "/conf/nginx.conf")
local f, err = io.open(out, "wb")
if not f then die(err) end
f:write(text)
f:close()
print(out)
