-- The walls of doc/architecture.md between the C files, read from their
-- #include lines: core/ below the binding, public headers free of private
-- ones, and the image layer's private headers used only from above.
local pht = require "pht"
local h = require "helpers"

-- The files of dir whose names match pattern, as "dir/name".
local function files(dir, pattern)
  local out = {}
  for _, e in ipairs(assert(pht.list_dir(h.root .. "/" .. dir))) do
    if e.type == "file" and e.name:match(pattern) then out[#out + 1] = dir .. "/" .. e.name end
  end
  return out
end

-- The quoted and angled headers a file includes.
local function includes(path)
  local quoted, angled = {}, {}
  for line in h.read(h.root .. "/" .. path):gmatch("[^\n]+") do
    local q = line:match('^%s*#%s*include%s+"([^"]+)"')
    local a = line:match("^%s*#%s*include%s+<([^>]+)>")
    if q then quoted[#quoted + 1] = q end
    if a then angled[#angled + 1] = a end
  end
  return quoted, angled
end

-- "path: header" for every include of files that matches pattern.
local function offenders(list, pattern)
  local bad = {}
  for _, path in ipairs(list) do
    local quoted, angled = includes(path)
    for _, inc in ipairs(quoted) do
      if inc:match(pattern) then bad[#bad + 1] = path .. ": " .. inc end
    end
    for _, inc in ipairs(angled) do
      if inc:match(pattern) then bad[#bad + 1] = path .. ": <" .. inc .. ">" end
    end
  end
  return bad
end

local function concat(...)
  local out = {}
  for _, t in ipairs({ ... }) do
    for _, v in ipairs(t) do out[#out + 1] = v end
  end
  return out
end

local core = concat(files("core/src", "%.[ch]$"), files("core/include/pht", "%.h$"))
local binding = concat(files("lua", "%.[ch]$"), files("lua/tests", "%.c$"), { "cli/main.c" })

describe("the C layers", function()
  it("reads the include lines it checks", function()
    local quoted, angled = includes("core/src/layer_stream.c")
    assert.are.same({ "hash_private.h", "layer_private.h", "pht/interrupt.h" }, quoted)
    assert.truthy(#angled > 0)
    assert.truthy(#core > 40 and #binding > 10)
  end)

  it("keeps Lua and the binding out of core/", function()
    for _, pattern in ipairs({ "^lua", "^lauxlib%.h$", "^lpht%.h$", "^limage%.h$", "^compat%.h$" }) do
      assert.are.same({}, offenders(core, pattern))
    end
  end)

  it("keeps the public headers free of private ones", function()
    assert.are.same({}, offenders(files("core/include/pht", "%.h$"), "_private%.h$"))
    for _, pattern in ipairs({ "_private%.h$", "^lpht%.h$", "^limage%.h$", "^compat%.h$" }) do
      assert.are.same({}, offenders({ "lua/pht.h" }, pattern))
    end
  end)

  it("has the binding call the core through its public headers only", function()
    assert.are.same({}, offenders(binding, "_private%.h$"))
  end)

  it("keeps the layer files below the image handle and the transports", function()
    local layer = { "core/src/layer_stream.c", "core/src/layer_cache.c", "core/src/tarsafe.c",
      "core/src/layer_sink.c", "core/src/layer_private.h" }
    assert.are.same({}, offenders(layer, "^image_private%.h$"))
    assert.are.same({}, offenders(layer, "^transport_private%.h$"))
    assert.are.same({}, offenders({ "core/src/image_private.h", "core/src/layer_index.c",
      "core/src/image_config.c" }, "^transport_private%.h$"))
  end)

  it("lets the helper headers include public headers only", function()
    assert.are.same({}, offenders({ "core/src/fs_private.h", "core/src/hash_private.h",
      "core/src/json_private.h" }, "_private%.h$"))
  end)
end)
