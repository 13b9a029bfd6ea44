-- pht.stock: one rule for where the stock workflows are, in the source
-- tree, in an installed tree (cmake --install, nothing added to
-- package.path but the module's own directories) and under $PHT_SCRIPTS_DIR.
local helpers = require "helpers"
local stock = require "pht.stock"

local q = helpers.q
local lua = jit and "luajit" or "lua5.4"

-- Run a Lua chunk in a fresh interpreter with package.path/cpath set to
-- `path`/`cpath` only (plus the interpreter's defaults) and env prefixed.
local function run_lua(chunk, path, cpath, env)
  local file = helpers.tmpdir() .. "/chunk.lua"
  helpers.write(file, string.format("package.path = %q .. package.path\npackage.cpath = %q .. package.cpath\n%s",
    path, cpath, chunk))
  return helpers.sh((env or "") .. " " .. lua .. " " .. q(file))
end

describe("pht.stock", function()
  it("finds the stock workflows in scripts/ of the source tree beside lua/", function()
    local path = assert(stock.find("pre_run"))
    assert.equal(helpers.read(helpers.root .. "/scripts/pre_run.lua"), helpers.read(path))
  end)

  it("loads a fresh workflow every time, so changing one never changes the next", function()
    local a = assert(stock.load("pre_run"))
    local b = assert(stock.load("pre_run"))
    assert.equal("pre-run", a.name)
    a:remove("write_image")
    assert.truthy(b:step("write_image"))
  end)

  it("names the places it looked in for a workflow that does not exist", function()
    local path, err = stock.find("no_such_workflow")
    assert.is_nil(path)
    assert.matches("cannot find the stock workflow no_such_workflow.lua (looked in: ", err, 1, true)
    assert.matches("PHT_SCRIPTS_DIR", err, 1, true)
  end)

  it("looks only in $PHT_SCRIPTS_DIR when it is set", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/pre_run.lua", "return require('pht.workflow').new('from-env')")
    local lua_dir = helpers.root .. "/lua"
    local chunk = [[
      local stock = require "pht.stock"
      print(assert(stock.load("pre_run")).name)
      print(select(2, stock.find("post_run")))
    ]]
    local ok, out = run_lua(chunk, lua_dir .. "/?.lua;", helpers.build .. "/lua/" .. helpers.abi .. "/?.so;",
      "PHT_SCRIPTS_DIR=" .. q(dir))
    assert.is_true(ok, out)
    assert.matches("^from%-env\n", out)
    assert.matches("(looked in: " .. dir .. ";", out, 1, true)
  end)

  it("reports a script that does not return a workflow", function()
    local file = helpers.tmpdir() .. "/x.lua"
    helpers.write(file, "return 42")
    local wf, err = stock.load_file(file)
    assert.is_nil(wf)
    assert.equal(file .. " does not return a workflow", err)
  end)

  it("finds the installed workflows from an installed pht.verify with no scripts on package.path", function()
    local prefix = helpers.tmpdir() .. "/prefix"
    helpers.run("cmake --install " .. q(helpers.build) .. " --prefix " .. q(prefix) .. " >/dev/null")
    local function installed(pattern)
      local found = helpers.run("find " .. q(prefix) .. " -path " .. q(pattern)):match("^(%S+)\n")
      return assert(found, "cmake --install put no " .. pattern .. " under " .. prefix)
    end
    local so = installed("*/lua/" .. helpers.abi .. "/pht.so")
    local lua_dir = installed("*/lua/" .. helpers.abi .. "/pht/stock.lua"):match("^(.*)/pht/stock%.lua$")
    local share = lua_dir:match("^(.*)/lua/[^/]+$")
    local chunk = [[
      local wf, removed = assert(require("pht.verify").workflow({}))
      print(wf.name, removed[1])
      print(assert(require("pht.stock").find("post_run")))
    ]]
    local ok, out = run_lua(chunk, lua_dir .. "/?.lua;", so:match("^(.*)/pht%.so$") .. "/?.so;")
    assert.is_true(ok, out)
    assert.matches("^pre%-run\twrite_image\n", out)
    assert.matches("\n" .. share:gsub("%p", "%%%0") .. "/libpht%-scripts/post_run%.lua\n$", out)
  end)
end)

describe("the stock workflows", function()
  for _, name in ipairs({ "pre_run", "post_run", "run", "decrypt_results", "build" }) do
    it(name .. " marks every step with the section of PROTOCOL.md it carries out", function()
      local wf = assert(stock.load(name))
      for _, step in ipairs(wf.steps) do
        assert.is_string(step.protocol, step.name)
        assert.matches("^§%d+[%.%d]*%l?$", step.protocol, nil, false, step.name)
      end
    end)
  end

  it("post-run validates the config in a step of its own before it writes", function()
    local names = assert(stock.load("post_run")):names()
    local at = {}
    for i, n in ipairs(names) do at[n] = i end
    assert.equal(at.wrap_keys + 1, at.validate_config)
    assert.equal(at.validate_config + 1, at.write_image)
  end)
end)
