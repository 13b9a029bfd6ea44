-- pht.docker: the container calls of the Engine client on the real dockerd.
local pht = require "pht"
local support = require "support"

-- The command's stdout; nil when it failed (5.4 and LuaJIT alike).
local function sh(cmd)
  local p = io.popen(cmd .. " 2>/dev/null; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.-)rc=(%d+)\n$")
  if rc ~= "0" then return nil end
  return true, body
end

describe("pht.docker", function()
  it("creates, starts, waits for, commits and removes a container", function()
    local d = assert(pht.open_docker())
    local name = support.unique_name("lua-run")
    local tag = name:gsub("[^%w]", "")
    local id = assert(d:create(name, '{"Image":"pht-test/busybox:latest","Cmd":["sh","-c",'
      .. '"echo made >/made.txt; exit 5"],"HostConfig":{"NetworkMode":"none"}}'))
    assert.is_true(d:start(id))
    assert.are.equal(5, d:wait(id))
    finally(function() sh("docker rmi pht-test-lua-commit:" .. tag) end)
    local img = assert(d:commit(id, "pht-test-lua-commit", tag))
    assert.matches("^sha256:", img)
    local ok, out = sh("docker run --rm --network none pht-test-lua-commit:" .. tag .. " cat /made.txt")
    assert.is_true(ok)
    assert.are.equal("made\n", out)
    assert.is_true(d:remove(id))
    assert.is_falsy(sh("docker inspect " .. name .. " >/dev/null"))
    local none, err, code = d:start(id)
    assert.is_nil(none)
    assert.matches("start container ", err)
    assert.are.equal("ENOTFOUND", code)
  end)

  it("refuses a create object whose name is taken", function()
    local d = assert(pht.open_docker())
    local name = support.unique_name("lua-dup")
    local cfg = '{"Image":"pht-test/busybox:latest","Cmd":["true"]}'
    local id = assert(d:create(name, cfg))
    local none, err, code = d:create(name, cfg)
    assert.is_nil(none)
    assert.matches("create container " .. name, err, 1, true)
    assert.are.equal("ESTATE", code)
    assert.is_true(d:remove(id))
  end)
end)
