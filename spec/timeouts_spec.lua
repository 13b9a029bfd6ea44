-- Timeouts of the Docker Engine calls as a station meets them: a daemon that
-- answers with a header and then holds the connection (spec/support/netfault.py
-- "stall", at DOCKER_HOST=tcp://…) must not hang `pht inspect` or
-- pht.open_image of a docker-daemon: image; each fails within its limit,
-- naming the call, the endpoint and the limit. Every Engine call on its own
-- is covered by core/tests/test_timeouts.c; doc/daemon.md#timeouts.
local h = require "helpers"
local netfault = require "support.netfault"

local pht_bin = h.build .. "/bin/pht"
local lua = jit and "luajit" or "lua5.4"

-- Run cmd with env (a string of VAR=value words) set; returns ok, output, seconds.
local function timed(env, cmd)
  local t0 = os.time()
  local ok, out = h.sh("env " .. env .. " " .. cmd)
  return ok, out, os.time() - t0
end

describe("timeouts of the Docker Engine calls", function()
  local server
  before_each(function()
    server = assert(netfault.start("stall", {}))
  end)
  after_each(function()
    server:stop()
  end)

  it("ends pht inspect of a daemon image at the idle limit of PHT_DOCKER_TIMEOUT", function()
    local host = "tcp://" .. server.addr
    local ok, out, secs = timed("DOCKER_HOST=" .. h.q(host) .. " PHT_DOCKER_TIMEOUT=1",
      h.q(pht_bin) .. " inspect docker-daemon:pht/stalled:1")
    assert.is_false(ok)
    assert.truthy(out:find("inspect image pht/stalled:1: GET /v1.41/images/pht/stalled:1/json at "
      .. host .. ": no bytes for 1 s", 1, true), out)
    assert.truthy(out:find("PHT_DOCKER_TIMEOUT", 1, true), out)
    assert.is_true(secs <= 5, "pht inspect ran " .. secs .. " s")
    assert.truthy(server:events()[1]:find("GET /v1.41/images/pht/stalled:1/json", 1, true))
  end)

  it("takes --timeout over PHT_DOCKER_TIMEOUT, here a total limit", function()
    local host = "tcp://" .. server.addr
    local ok, out, secs = timed("DOCKER_HOST=" .. h.q(host) .. " PHT_DOCKER_TIMEOUT=600",
      h.q(pht_bin) .. " inspect --timeout idle=0,total=2 docker-daemon:pht/stalled:1")
    assert.is_false(ok)
    assert.truthy(out:find("at " .. host .. ": not done within 2 s", 1, true), out)
    assert.is_true(secs <= 6, "pht inspect ran " .. secs .. " s")
  end)

  it("ends pht pre-run's open_image step at the limit, naming the step", function()
    local host = "tcp://" .. server.addr
    local ok, out, secs = timed("DOCKER_HOST=" .. h.q(host) .. " STATION_ID=station_1 "
      .. "PRIVATE_KEY_PATH=" .. h.q(h.key_path("station_1")),
      h.q(pht_bin) .. " pre-run --timeout 1 docker-daemon:pht/stalled:1")
    assert.is_false(ok)
    assert.truthy(out:find("open_image", 1, true), out)
    assert.truthy(out:find("no bytes for 1 s", 1, true), out)
    assert.is_true(secs <= 5, "pht pre-run ran " .. secs .. " s")
  end)

  it("ends pht.open_image at its docker_timeout option", function()
    local host = "tcp://" .. server.addr
    local script = ([[
      package.cpath = %q
      local img, err, code = require("pht").open_image("docker-daemon:pht/stalled:1",
        { docker_timeout = 1 })
      print(tostring(img), code, err)
    ]]):format(package.cpath)
    local ok, out, secs = timed("DOCKER_HOST=" .. h.q(host), lua .. " -e " .. h.q(script))
    assert.is_true(ok, out)
    assert.truthy(out:find("^nil\tEHTTP\t"), out)
    assert.truthy(out:find("no bytes for 1 s", 1, true), out)
    assert.is_true(secs <= 5, "the open ran " .. secs .. " s")
  end)

  it("refuses a docker_timeout it cannot read, naming the option", function()
    local img, err, code = require("pht").open_image("docker-daemon:pht/stalled:1",
      { docker_timeout = "idle=soon" })
    assert.is_nil(img)
    assert.are.equal("EINVAL", code)
    assert.truthy(err:find('docker_timeout: Docker timeouts "idle=soon"', 1, true), err)
    assert.are.same({}, server:events()) -- refused before any call
  end)
end)
