-- `pht post-run`: where the output is built (below the pre-run layer, or on
-- REPO:base with --rebase), what it refuses, and that a refused post-run
-- leaves the image byte for byte as it was.
local helpers = require "helpers"
local pht = require "pht"
local S = require "wf_support"
local support = require "support"

local q = helpers.q

-- Stage 0 of the reference, pre-run by station_1 and run (stand-in).
local function ran_stage0()
  local path, ref = S.copy_stage(0)
  local code, _, err = S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))
  assert(code == 0, err)
  S.run_reference_train(ref, 1)
  return path, ref
end

local function refused(path, ref, args, step, reason)
  local before = helpers.sha256_file(path)
  local tmp = helpers.tmpdir()
  local code, _, err = S.pht("post-run -q " .. q(ref) .. " --tmpdir " .. q(tmp) .. " " .. args)
  assert.equal(1, code, err)
  assert.matches("post-run failed at step " .. step .. ": ", err, 1, true)
  assert.matches(reason, err)
  assert.equal(before, helpers.sha256_file(path))
  assert.equal("", helpers.run("ls -A " .. q(tmp)))
end

describe("pht post-run", function()
  it("builds on the layers below the pre-run layer and adds one layer with the whole /opt", function()
    local path, ref = ran_stage0()
    local code, _, err = S.pht("post-run -q " .. q(ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    local layers = S.layers(path)
    -- below the pre-run layer: the train's base (pre-run left out the
    -- train's layer of /opt only, its own layer restating /opt)
    local original = S.layers(helpers.vectors .. "/stage0-built.tar")
    local base = S.below_train(original)
    assert.is_true(base >= 1 and base < #original)
    assert.equal(base + 1, #layers)
    for i = 1, base do
      assert.equal(helpers.sha256_file(original[i].path), helpers.sha256_file(layers[i].path))
    end
    local members = S.members(layers[#layers].path)
    table.sort(members)
    for _, want in ipairs({ "opt/", "opt/train_config.json", "opt/user_sym_key.key", "opt/pht_train/.wh..wh..opq",
      "opt/pht_train/entrypoint.sh", "opt/pht_train/analysis.r", "opt/pht_train/query.json",
      "opt/pht_results/.wh..wh..opq", "opt/pht_results/count.txt", "opt/pht_results/a/b.txt" }) do
      local found = false
      for _, m in ipairs(members) do if m == want then found = true end end
      assert.is_true(found, want .. " missing from the new layer")
    end
  end)

  it("writes to --output and leaves the input unchanged; the next station accepts the output", function()
    local path, ref = ran_stage0()
    local before = helpers.sha256_file(path)
    local out = "docker-archive:" .. helpers.tmpdir() .. "/out.tar"
    local code, _, err = S.pht("post-run -q " .. q(ref) .. " --output " .. q(out) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    assert.equal(before, helpers.sha256_file(path))
    code, _, err = S.pht("pre-run -q " .. q(out) .. " " .. S.station_args(2))
    assert.equal(0, code, err)
  end)

  it("leaves no temporary files behind", function()
    local _, ref = ran_stage0()
    local tmp = helpers.tmpdir()
    local code, _, err = S.pht("post-run -q " .. q(ref) .. " --tmpdir " .. q(tmp) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    assert.equal("", helpers.run("ls -A " .. q(tmp)))
  end)

  it("works on an OCI layout, read back by skopeo", function()
    local dir = helpers.tmpdir() .. "/layout"
    helpers.run("skopeo copy -q " .. q("docker-archive:" .. helpers.vectors .. "/stage0-built.tar")
      .. " " .. q("oci:" .. dir .. ":latest"))
    local ref = "oci:" .. dir .. ":latest"
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))))
    -- The train's run: one more layer under the same name, as docker commit would.
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer({}))
    assert(w:add_bytes("/opt/pht_results/out.txt", "result"))
    assert(w:commit(ref, { history = "run" }))
    img:close()
    local code, _, err = S.pht("post-run -q " .. q(ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    local inspect = pht.json_decode(helpers.stdout("skopeo inspect " .. q(ref)))
    -- the base's layer and the new one: pre-run left out the train's layer of /opt only
    assert.equal(S.below_train(S.layers(helpers.vectors .. "/stage0-built.tar")) + 1, #inspect.Layers)
    -- The blob of the layer pre-run wrote (the decrypted entrypoint, the
    -- results) is gone from the layout, not just unreferenced.
    local found = helpers.sh("grep -r -l -a -F " .. q("mkdir -p /opt/pht_results/a") .. " " .. q(dir))
    assert.is_false(found)
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(2))))
  end)

  describe("with --rebase", function()
    -- A train built by `pht build` on the busybox base: REPO:latest and REPO:base.
    local function built_train()
      local base = support.base_image()
      assert(base, "no base image")
      local dir = helpers.tmpdir()
      for _, who in ipairs({ "creator", "s1", "s2" }) do
        assert.equal(0, (S.pht("keygen --out " .. q(dir .. "/" .. who))))
      end
      helpers.run("mkdir -p " .. q(dir .. "/files"))
      helpers.write(dir .. "/files/run.sh", "echo hi\n")
      local archive = dir .. "/train.tar"
      local ref = "docker-archive:" .. archive .. ":pht/rebase:latest"
      local code, _, err = S.pht("build -q --files " .. q(dir .. "/files")
        .. " --station " .. q("s1=" .. dir .. "/s1.pub.pem") .. " --station " .. q("s2=" .. dir .. "/s2.pub.pem")
        .. " --creator-id 1 --creator-key " .. q(dir .. "/creator.pem")
        .. " --base " .. q("docker-archive:" .. base) .. " --output " .. q(ref))
      assert.equal(0, code, err)
      return dir, archive, ref
    end

    it("puts the new /opt on REPO:base, so the image has the base's layers plus one", function()
      local dir, archive, ref = built_train()
      local args = "--station s1 --key " .. q(dir .. "/s1.pem")
      assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. args)))
      local img = assert(pht.open_image(ref))
      local w = assert(img:writer({}))
      assert(w:add_bytes("/opt/pht_results/out.txt", "result"))
      assert(w:commit(ref, { history = "run" }))
      img:close()
      local code, _, err = S.pht("post-run -q --rebase " .. q(ref) .. " " .. args)
      assert.equal(0, code, err)
      local base_layers = S.layers(archive, "pht/rebase:base")
      local layers = S.layers(archive, "pht/rebase:latest")
      assert.equal(#base_layers + 1, #layers)
      assert.equal("libpht post-run", layers[#layers].history.created_by)
      code, _, err = S.pht("pre-run -q " .. q(ref) .. " --station s2 --key " .. q(dir .. "/s2.pem"))
      assert.equal(0, code, err)
    end)

    it("refuses when REPO:base is not in the archive, at find_base", function()
      local path, ref = ran_stage0()
      refused(path, ref, "--rebase " .. S.station_args(1), "find_base", "cannot open the base image")
    end)
  end)
end)

describe("pht post-run refuses", function()
  it("an image no libpht pre-run wrote, at find_base", function()
    local path, ref = S.copy_stage(1)
    refused(path, ref, S.station_args(2), "find_base", "no layer of this image was written by libpht pre%-run")
  end)

  it("an algorithm that changed its own files, at verify_immutable_hash", function()
    local path, ref = ran_stage0()
    S.tamper(ref, function(w) assert(w:add_bytes("/opt/pht_train/entrypoint.sh", "#!/bin/sh\necho changed\n")) end)
    refused(path, ref, S.station_args(1), "verify_immutable_hash", "immutable files have changed")
  end)

  it("a file the algorithm added to /opt/pht_train, at check_immutable_files", function()
    local path, ref = ran_stage0()
    S.tamper(ref, function(w) assert(w:add_bytes("/opt/pht_train/new.sh", "echo\n")) end)
    refused(path, ref, S.station_args(1), "check_immutable_files", "new.sh is not in file_list")
  end)

  it("a symbolic link among the results, at check_results_files", function()
    local path, ref = ran_stage0()
    S.tamper(ref, function(w) assert(w:add_symlink("/opt/pht_results/link", "count.txt")) end)
    refused(path, ref, S.station_args(1), "check_results_files", "link is a symbolic link")
  end)

  it("a station whose turn it is not, at check_turn", function()
    local path, ref = ran_stage0()
    refused(path, ref, S.station_args(2), "check_turn", "it is station station_1's turn")
  end)

  it("the wrong key for the station, at check_station_key", function()
    local path, ref = ran_stage0()
    refused(path, ref, S.station_args(1, "station_3"), "check_station_key", "is not station station_1's key")
  end)
end)
