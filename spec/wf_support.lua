-- Support for the workflow and CLI specs: running the `pht` binary, copies
-- of the reference trains, tampering with them, reading images with tar.
local helpers = require "helpers"
local pht = require "pht"
local dkjson = require "dkjson"

local M = {}

M.bin = helpers.build .. "/bin/pht"
M.repo_tag = "pht-bench/ref-0:latest"
M.stages = {
  [0] = "stage0-built.tar",
  [1] = "stage1-station_1-post.tar",
  [2] = "stage2-station_2-post.tar",
  [3] = "stage3-station_3-post.tar",
}

local q = helpers.q

function M.expected()
  if not M._expected then M._expected = dkjson.decode(helpers.read(helpers.vectors .. "/expected.json")) end
  return M._expected
end

-- Run the pht binary with a shell argument string; returns exit code, stdout, stderr.
function M.pht(args, env)
  local dir = helpers.tmpdir()
  local prefix = ""
  for k, v in pairs(env or {}) do prefix = prefix .. k .. "=" .. q(v) .. " " end
  local p = assert(io.popen(prefix .. q(M.bin) .. " " .. args .. " >" .. q(dir .. "/out") .. " 2>"
    .. q(dir .. "/err") .. "; echo $?"))
  local code = tonumber(p:read("*a"):match("(%d+)"))
  p:close()
  return code, helpers.read(dir .. "/out"), helpers.read(dir .. "/err")
end

-- A writable copy of a reference stage; returns path and docker-archive ref.
function M.copy_stage(n)
  local dir = helpers.tmpdir()
  local path = dir .. "/" .. M.stages[n]
  helpers.run("cp " .. q(helpers.vectors .. "/" .. M.stages[n]) .. " " .. q(path))
  return path, "docker-archive:" .. path
end

function M.key(name) return helpers.key_path(name) end

-- pre-run/post-run arguments for station N of the reference route.
function M.station_args(n, key)
  return "--station station_" .. n .. " --key " .. q(M.key(key or ("station_" .. n)))
end

-- JSON with nulls kept (the config's nulls must survive a rewrite).
function M.decode(text) return dkjson.decode(text, 1, dkjson.null) end
function M.encode(v) return dkjson.encode(v, { indent = true }) end
M.null = dkjson.null

-- Change an image the way an attacker with write access would: a new layer
-- on top, written with the image writer. edit(w, img) adds entries.
function M.tamper(ref, edit, history)
  local img = assert(pht.open_image(ref))
  local w = assert(img:writer({}))
  edit(w, img)
  assert(w:commit(ref, { tags = { M.repo_tag }, history = history or "tampered" }))
  img:close()
end

-- Rewrite /opt/train_config.json through fn(config_table).
function M.tamper_config(ref, fn)
  M.tamper(ref, function(w, img)
    local cfg = M.decode(assert(img:read_file("/opt/train_config.json")))
    fn(cfg)
    assert(w:add_bytes("/opt/train_config.json", M.encode(cfg)))
  end)
end

-- The symmetric key of a stage, unwrapped with a station's key.
function M.symkey(ref, station_index, key_name)
  local img = assert(pht.open_image(ref))
  local cfg = assert(pht.parse_config(assert(img:read_file("/opt/train_config.json"))))
  img:close()
  local stop = cfg:route()[station_index + 1]
  local key = assert(pht.load_private_key_file(M.key(key_name)))
  return assert(key:unwrap(assert(pht.unhex(stop.encrypted_key))))
end

-- The image's layers, read with tar: { {path = extracted layer tar, history = {created_by, comment}} }
-- bottom first, and the manifest entry for `tag`.
function M.layers(archive, tag)
  local dir = helpers.tmpdir()
  helpers.run("tar -xf " .. q(archive) .. " -C " .. q(dir))
  local manifest = dkjson.decode(helpers.read(dir .. "/manifest.json"))
  local entry
  for _, m in ipairs(manifest) do
    for _, t in ipairs(m.RepoTags or {}) do if t == (tag or M.repo_tag) then entry = m end end
  end
  assert(entry, "no image tagged " .. tostring(tag or M.repo_tag) .. " in " .. archive)
  local config = dkjson.decode(helpers.read(dir .. "/" .. entry.Config))
  local hist = {}
  for _, h in ipairs(config.history or {}) do
    if not h.empty_layer then hist[#hist + 1] = h end
  end
  local out = {}
  for i, l in ipairs(entry.Layers) do
    out[i] = { path = dir .. "/" .. l, history = hist[i] or {} }
  end
  return out, manifest, dir
end

-- Extract one layer tar into a fresh directory with tar; returns the directory.
function M.untar(layer)
  local dir = helpers.tmpdir()
  helpers.run("tar -xf " .. q(layer) .. " -C " .. q(dir))
  return dir
end

-- How many of `layers` (M.layers) lie below the train's own: up to the last
-- one tar lists a member outside /opt in. The layers above it hold /opt
-- only (what a pre-run leaves out, its new layer restating /opt).
function M.below_train(layers)
  local n = 0
  for i, l in ipairs(layers) do
    for _, m in ipairs(M.members(l.path)) do
      local p = m:gsub("^%./", ""):gsub("/$", "")
      if p ~= "" and p ~= "opt" and not p:find("^opt/") then
        n = i
        break
      end
    end
  end
  return n
end

-- Members of a tar, as listed by tar.
function M.members(tarfile)
  local out = helpers.run("tar -tf " .. q(tarfile))
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

-- What the reference's entrypoint writes after `n` visits (expected.json's
-- entrypoint), path -> content.
function M.results_after(n)
  local b = {}
  for i = 1, n do b[#b + 1] = "visit " .. i .. "\n" end
  local nums = {}
  for i = 1, n * 1000 do nums[#nums + 1] = tostring(i) end
  return {
    ["count.txt"] = n .. "\n",
    ["a/b.txt"] = table.concat(b),
    ["a-c.txt"] = "side " .. n .. "\n",
    ["a/numbers.txt"] = table.concat(nums, "\n") .. "\n",
  }
end

-- Stand-in for running the reference's train at visit n: write the results
-- its entrypoint would leave as a new layer (what `docker commit` adds).
function M.run_reference_train(ref, n)
  local dir = helpers.tmpdir()
  helpers.run("mkdir -p " .. q(dir .. "/a"))
  local results = M.results_after(n)
  M.tamper(ref, function(w)
    assert(w:add_dir("/opt/pht_results", { opaque = true }))
    assert(w:add_dir("/opt/pht_results/a"))
    for p, content in pairs(results) do
      helpers.write(dir .. "/" .. p, content)
      assert(w:add_file("/opt/pht_results/" .. p, dir .. "/" .. p))
    end
  end, "stand-in run of the reference entrypoint")
end

return M
