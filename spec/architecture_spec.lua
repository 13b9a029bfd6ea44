-- The layers of doc/architecture.md point down only: core/ (C, no Lua) at
-- the bottom, the binding lua/*.c above it, the library lua/pht above that,
-- the stock workflows scripts/ above the library, and the front ends (the
-- command, pht.verify for the gateway, examples/) on top. The checker reads
-- every source file's require(...), pht.stock loads and #includes and
-- names each edge that points up; it is tried on a small made-up tree too,
-- so it is known to find what it looks for.
local helpers = require "helpers"

local q = helpers.q

-- Layers, bottom to top.
local CORE, BINDING, LIBRARY, SCRIPTS, FRONT = 1, 2, 3, 4, 5
local NAMES = { "core/", "the binding lua/*.c", "lua/pht", "scripts/", "a front end" }

-- The modules of lua/pht that are front ends (they run stock workflows or
-- are the command) rather than library.
local FRONT_MODULES = { ["pht.verify"] = true, ["pht.stock"] = true }

local function module_layer(name)
  if name == "pht" then return BINDING end
  if name == "pht.cli" or name:match("^pht%.cli%.") or FRONT_MODULES[name] then return FRONT end
  if name:match("^pht%.") then return LIBRARY end
  if name:match("^pht_gateway") then return FRONT end
  return nil -- not libpht's (dkjson, ngx, ...)
end

-- The layer of a source file, from its path relative to the tree's root.
local function file_layer(path)
  if path:match("^core/") then return CORE end
  if path:match("^lua/[^/]+%.[ch]$") then return BINDING end
  if path == "lua/pht/cli.lua" or path:match("^lua/pht/cli/") then return FRONT end
  local mod = path:match("^lua/(pht/.+)%.lua$")
  if mod then return module_layer((mod:gsub("/", "."))) end
  if path:match("^scripts/") then return SCRIPTS end
  if path:match("^examples/") or path:match("^cli/") then return FRONT end
  return nil
end

-- The lines of a Lua file, comment lines blanked.
local function code_lines(text)
  local out = {}
  for line in (text .. "\n"):gmatch("(.-)\n") do
    out[#out + 1] = line:match("^%s*%-%-") and "" or line
  end
  return out
end

-- Every libpht module or stock workflow a Lua file names: { {what, layer, line} }.
local function lua_edges(text)
  local edges = {}
  for n, line in ipairs(code_lines(text)) do
    for name in line:gmatch("require%s*%(?%s*[\"']([^\"']+)[\"']") do
      local layer = module_layer(name)
      if layer then edges[#edges + 1] = { "require " .. name, layer, n } end
    end
    -- stock.load("x"), require("pht.stock").find("x"), ...
    for name in line:gmatch("stock[\"']?%)?%.%a+%s*%(%s*[\"']([^\"']+)[\"']") do
      edges[#edges + 1] = { "stock workflow " .. name, SCRIPTS, n }
    end
    for _, fn in ipairs({ "dofile", "loadfile" }) do
      for name in line:gmatch("%f[%w_]" .. fn .. "%s*%(%s*[^)]-[\"']([^\"']*scripts/[^\"']*)[\"']") do
        edges[#edges + 1] = { "loads " .. name, SCRIPTS, n }
      end
    end
  end
  return edges
end

local LUA_HEADERS = { ["lua.h"] = true, ["lauxlib.h"] = true, ["lualib.h"] = true, ["luaconf.h"] = true,
  ["luajit.h"] = true, ["lua.hpp"] = true }

-- What a C file #includes that lies above core/: { {what, layer, line} }.
-- binding_headers: the names of lua/*.h.
local function c_edges(text, binding_headers)
  local edges = {}
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    local header = line:match("^%s*#%s*include%s*[<\"]([^>\"]+)[>\"]")
    if header then
      local base = header:match("([^/]+)$")
      -- lua/*.h are included by bare name (<pht.h>, "lpht.h"); "pht/pht.h" is core's umbrella
      if LUA_HEADERS[base] or binding_headers[header] or header:match("^lua/") or header:match("/lua/") then
        edges[#edges + 1] = { "#include " .. header, BINDING, n }
      end
      if header:match("scripts/") or header:match("%.lua$") then
        edges[#edges + 1] = { "#include " .. header, SCRIPTS, n }
      end
      if header:match("^cli/") or header:match("/cli/") then
        edges[#edges + 1] = { "#include " .. header, FRONT, n }
      end
    end
  end
  return edges
end

-- Every edge in the tree at root that points from a lower layer to a
-- higher one, as messages "path:line: what (LAYER may not depend on LAYER)".
local function violations(root)
  local listing = helpers.run("cd " .. q(root) .. " && find core lua scripts cli examples -type f "
    .. "\\( -name '*.lua' -o -name '*.c' -o -name '*.h' \\) 2>/dev/null; true")
  local found, binding_headers = {}, {}
  for path in listing:gmatch("[^\n]+") do
    local h = path:match("^lua/([^/]+%.h)$")
    if h then binding_headers[h] = true end
  end
  for path in listing:gmatch("[^\n]+") do
    local from = file_layer(path)
    if from then
      local text = helpers.read(root .. "/" .. path)
      local edges = path:match("%.lua$") and lua_edges(text) or c_edges(text, binding_headers)
      for _, e in ipairs(edges) do
        if e[2] > from then
          found[#found + 1] = string.format("%s:%d: %s (%s may not depend on %s)", path, e[3], e[1],
            NAMES[from], NAMES[e[2]])
        end
      end
    end
  end
  table.sort(found)
  return found
end

describe("the layers of doc/architecture.md", function()
  it("has no dependency pointing up anywhere in the source tree", function()
    assert.same({}, violations(helpers.root))
  end)

  it("names the layers the checker enforces in doc/architecture.md", function()
    local doc = helpers.read(helpers.root .. "/doc/architecture.md")
    for _, heading in ipairs({ "## lua/pht", "## scripts/", "## front ends" }) do
      assert.matches("\n" .. heading:gsub("%p", "%%%0"), doc)
    end
    for name in pairs(FRONT_MODULES) do assert.matches(name, doc, 1, true) end
  end)

  describe("the checker, on a made-up tree", function()
    local root
    local function put(path, text)
      helpers.run("mkdir -p " .. q((root .. "/" .. path):match("^(.*)/")))
      helpers.write(root .. "/" .. path, text)
    end

    before_each(function()
      root = helpers.tmpdir()
      put("core/src/ok.c", "#include <stdio.h>\n#include \"pht/pht.h\"\n")
      put("lua/lok.c", "#include <lua.h>\n#include \"lpht.h\"\n#include \"pht/hash.h\"\n")
      put("lua/lpht.h", "#include <lauxlib.h>\n")
      put("lua/pht/low.lua", "local pht = require \"pht\"\n-- require \"pht.cli\" in a comment\nreturn {}\n")
      put("lua/pht/cli.lua", "local low = require \"pht.low\"\nlocal stock = require \"pht.stock\"\n"
        .. "return stock.load(\"pre_run\")\n")
      put("scripts/pre_run.lua", "local low = require('pht.low')\nreturn {}\n")
      put("examples/gw/init.lua", "local verify = require \"pht.verify\"\nlocal cli = require \"pht.cli\"\n")
    end)

    it("finds nothing in a tree whose dependencies all point down", function()
      assert.same({}, violations(root))
    end)

    it("finds a library module that requires the command line", function()
      put("lua/pht/low.lua", "local cli = require(\"pht.cli.options\")\n")
      assert.same({ "lua/pht/low.lua:1: require pht.cli.options (lua/pht may not depend on a front end)" },
        violations(root))
    end)

    it("finds a library module that loads a stock workflow", function()
      put("lua/pht/low.lua", "local x = 1\nlocal wf = require(\"pht.stock\").load(\"post_run\")\n")
      local found = violations(root)
      assert.same({ "lua/pht/low.lua:2: require pht.stock (lua/pht may not depend on a front end)",
        "lua/pht/low.lua:2: stock workflow post_run (lua/pht may not depend on scripts/)" }, found)
    end)

    it("finds a library module that runs a script file by its path", function()
      put("lua/pht/low.lua", "return dofile(root .. \"/scripts/pre_run.lua\")\n")
      assert.same({ "lua/pht/low.lua:1: loads /scripts/pre_run.lua (lua/pht may not depend on scripts/)" },
        violations(root))
    end)

    it("finds a stock workflow that requires a front end", function()
      put("scripts/pre_run.lua", "local verify = require 'pht.verify'\n")
      assert.same({ "scripts/pre_run.lua:1: require pht.verify (scripts/ may not depend on a front end)" },
        violations(root))
    end)

    it("finds a core file that includes a Lua header", function()
      put("core/src/bad.c", "#include <stdio.h>\n#include <lauxlib.h>\n")
      assert.same({ "core/src/bad.c:2: #include lauxlib.h (core/ may not depend on the binding lua/*.c)" },
        violations(root))
    end)

    it("finds a core file that includes the binding's own header", function()
      put("core/include/pht/bad.h", "#include \"../../../lua/lpht.h\"\n")
      assert.same({ "core/include/pht/bad.h:1: #include ../../../lua/lpht.h (core/ may not depend on the binding lua/*.c)" },
        violations(root))
    end)

    it("finds a binding file that includes from scripts/", function()
      put("lua/lbad.c", "#include \"../scripts/pre_run.lua\"\n")
      assert.same({ "lua/lbad.c:1: #include ../scripts/pre_run.lua (the binding lua/*.c may not depend on scripts/)" },
        violations(root))
    end)
  end)
end)
