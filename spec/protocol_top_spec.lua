-- img:protocol_top(): the layers a pre-run keeps under its new layer. The
-- layers on top that hold only the train's /opt paths are the ones a layer
-- restating /opt whole shadows; anything else in a layer, and every layer
-- from the one that brought the config down, stays. Images are made with
-- the writer on the reference's built train (its base's layer, then the
-- train's /opt-only layer) and checked on docker-archive and an OCI layout.
local pht = require "pht"
local h = require "helpers"

local TAG = "pht-bench/ref-0:latest"

local function built(dir)
  local path = dir .. "/train.tar"
  h.run("cp " .. h.q(h.vectors .. "/stage0-built.tar") .. " " .. h.q(path))
  return "docker-archive:" .. path .. ":" .. TAG
end

-- Add one layer made by fill(w) on top of ref (or on its first `keep` layers).
local function add_layer(ref, fill, keep)
  local img = assert(pht.open_image(ref))
  local w = assert(img:writer({ keep_layers = keep }))
  fill(w)
  assert(w:commit(ref, { history = "spec layer" }))
  img:close()
end

local function top_of(ref)
  local img = assert(pht.open_image(ref))
  local top, n = img:protocol_top(), #img:layers()
  img:close()
  return top, n
end

describe("image:protocol_top", function()
  local dir
  before_each(function() dir = h.tmpdir() end)

  it("leaves out the train's own layer of /opt above its base", function()
    local top, n = top_of(built(dir))
    assert.equal(2, n)
    assert.equal(1, top)
  end)

  it("leaves out a sealed layer of results, config and key, and whiteouts of the train's paths", function()
    local ref = built(dir)
    add_layer(ref, function(w)
      assert(w:add_dir("/opt/pht_results", { opaque = true }))
      assert(w:add_bytes("/opt/pht_results/r.enc", "sealed"))
      assert(w:whiteout("/opt/pht_results/old.enc"))
      assert(w:whiteout("/opt/pht_train"))
      assert(w:add_bytes("/opt/train_config.json", "{}"))
      assert(w:add_bytes("/opt/user_sym_key.key", "key"))
    end)
    local top, n = top_of(ref)
    assert.equal(3, n)
    assert.equal(1, top)
  end)

  local kept = {
    { "a file outside /opt", function(w) assert(w:add_bytes("/usr/local/bin/tool", "#!/bin/sh\n")) end },
    { "a directory outside /opt restated", function(w) assert(w:add_dir("/etc")) end },
    { "a file under /opt outside the train's paths", function(w) assert(w:add_bytes("/opt/extra.txt", "x")) end },
    { "a setuid file in the results", function(w)
      assert(w:add_bytes("/opt/pht_results/helper", "x", { mode = tonumber("4755", 8) }))
    end },
    { "a symlink in the results leaving /opt", function(w)
      assert(w:add_symlink("/opt/pht_results/passwd", "/etc/passwd"))
    end },
    { "/opt made opaque", function(w) assert(w:add_dir("/opt", { opaque = true })) end },
  }
  for _, case in ipairs(kept) do
    it("keeps every layer when the top one holds " .. case[1], function()
      local ref = built(dir)
      add_layer(ref, case[2])
      local top, n = top_of(ref)
      assert.equal(3, n)
      assert.equal(3, top)
    end)
  end

  it("keeps a layer of /opt paths below the one that brought the config (a master's)", function()
    local ref = built(dir)
    -- base, then a layer holding only /opt/pht_results, then the train's layer again
    local img = assert(pht.open_image(ref))
    local cfg = assert(img:read_file("/opt/train_config.json"))
    img:close()
    add_layer(ref, function(w) assert(w:add_dir("/opt/pht_results")) end, 1)
    add_layer(ref, function(w) assert(w:add_bytes("/opt/train_config.json", cfg)) end)
    add_layer(ref, function(w) assert(w:add_bytes("/opt/pht_results/r.enc", "sealed")) end)
    local top, n = top_of(ref)
    assert.equal(4, n)
    assert.equal(2, top)
  end)

  it("answers the same for the train copied into an OCI layout (gzip layers)", function()
    if not h.sh("command -v skopeo >/dev/null") then return pending("skopeo is not installed") end
    local ref = built(dir)
    local oci = "oci:" .. dir .. "/layout:latest"
    h.run("skopeo copy -q " .. h.q(ref) .. " " .. h.q(oci))
    local top, n = top_of(oci)
    assert.equal(2, n)
    assert.equal(1, top)
  end)
end)
