-- The oci-archive: transport (core/src/image_oci_archive.c): an OCI image
-- layout in a tar, as skopeo writes it. skopeo is the oracle both ways; an
-- archive holding anything but the layout's own names is refused.
local pht = require "pht"
local helpers = require "helpers"
local support = require "support"

local q = helpers.q

local function skopeo(args)
  return helpers.sh("skopeo " .. args .. " 2>&1")
end

local function base_archive()
  local path = helpers.tmpdir() .. "/base.tar"
  local ok, out = skopeo("copy -q " .. q("oci:" .. assert(support.base_image_oci()) .. ":latest") .. " "
    .. q("oci-archive:" .. path .. ":latest"))
  assert(ok, out)
  return path
end

describe("the oci-archive: transport", function()
  it("reads an archive skopeo wrote", function()
    local img = assert(pht.open_image("oci-archive:" .. base_archive() .. ":latest"))
    assert.are.equal("oci-archive", img:transport())
    assert.is_truthy(img:stat("/bin/busybox"))
    img:close()
  end)

  it("writes an archive skopeo inspects and copies digest-checked, keeping the archive's other images", function()
    local path = base_archive()
    local img = assert(pht.open_image("oci-archive:" .. path .. ":latest"))
    local w = assert(img:writer())
    assert(w:add_bytes("/opt/x.txt", "in the archive\n"))
    assert(w:commit("oci-archive:" .. path .. ":v2"))
    w:close()
    img:close()
    local ok, out = skopeo("inspect " .. q("oci-archive:" .. path .. ":v2"))
    assert.is_true(ok, out)
    assert.are.equal(2, #pht.json_decode(out).Layers)
    ok, out = skopeo("inspect " .. q("oci-archive:" .. path .. ":latest"))
    assert.is_true(ok, out)
    local dir = helpers.tmpdir() .. "/copy"
    ok, out = skopeo("copy -q " .. q("oci-archive:" .. path .. ":v2") .. " " .. q("oci:" .. dir .. ":v2"))
    assert.is_true(ok, out)
    local back = assert(pht.open_image("oci-archive:" .. path .. ":v2"))
    assert.are.equal("in the archive\n", back:read_file("/opt/x.txt"))
    back:close()
  end)

  it("refuses an archive with a name outside the layout, and writes nothing", function()
    local dir = helpers.tmpdir()
    helpers.run("mkdir -p " .. q(dir .. "/l") .. " && cd " .. q(dir .. "/l")
      .. " && tar -xf " .. q(base_archive()) .. " && echo x > evil && tar -cf ../bad.tar oci-layout index.json blobs evil")
    local img, msg, code = pht.open_image("oci-archive:" .. dir .. "/bad.tar")
    assert.is_nil(img)
    assert.are.equal("EUNSAFE", code)
    assert.is_truthy(msg:find("evil", 1, true), msg)
  end)
end)
