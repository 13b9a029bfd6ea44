-- A three-station route whose only link is a registry, as Harbor links
-- stations: docker-registry with `auth: token` (tools/token-service.py in
-- Harbor's role), one project per station and a robot account per station
-- that may pull and push its own project and the next one. Each station
-- pulls the train from its project with pht alone (pre-run into a local OCI
-- layout), a stand-in run writes the results, and post-run pushes the train
-- into the next station's project; every station keeps its own cache dir,
-- as on its own machine. The registry's access log is the oracle for what
-- was mounted and what was uploaded; skopeo for what was pushed.
local pht = require "pht"
local helpers = require "helpers"
local support = require "support"
local S = require "wf_support"

local q = helpers.q

local SECRET = "pht-registry-route: counted rows"

local function service()
  local svc, why = support.registry_service("token")
  if svc then return svc end
  if support.required("registry-token") then error("registry-token is required but unavailable: " .. why, 2) end
  pending(why)
end

-- The registry's access log lines that name repository repo.
local function log_lines(svc, repo)
  local out = {}
  local f = assert(io.open((svc.log:gsub("token%.log$", "registry.log")), "rb"))
  for line in f:lines() do
    if line:find("/v2/" .. repo .. "/", 1, true) then out[#out + 1] = line end
  end
  f:close()
  return out
end

-- How each blob reached repo: "skipped" (HEAD 200), "mounted" (POST ?mount 201),
-- "uploaded" (PATCH), keyed by digest; and the number of PATCHes.
local function arrivals(svc, repo)
  local how, patches = {}, 0
  for _, line in ipairs(log_lines(svc, repo)) do
    local head = line:match('"HEAD /v2/[^ ]-/blobs/(sha256:%x+) HTTP/[%d.]+" 200')
    if head then how[head] = how[head] or "skipped" end
    local m = line:match('"POST /v2/[^ ]-/blobs/uploads/%?mount=sha256%%3A(%x+)&[^ ]* HTTP/[%d.]+" 201')
    if m then how["sha256:" .. m] = "mounted" end
    if line:find('"PATCH /v2/', 1, true) then patches = patches + 1 end
  end
  return how, patches
end

local function run(args, env)
  local code, out, err = S.pht(args, env)
  assert.are.equal(0, code, err)
  return out, err
end

describe("a three-station route linked only by a token-auth registry", function()
  local route_state

  local function prepare()
    if route_state then return route_state end
    local svc = service()
    local pfx = support.unique_name("route"):gsub("%-", "_")
    local t = { svc = svc, dir = helpers.tmpdir(), project = {}, creds = {} }
    for i, who in ipairs({ "station_1", "station_2", "station_3", "creator" }) do
      t.project[i] = pfx .. "_" .. who
    end
    for _, who in ipairs({ "creator", "s1", "s2", "s3" }) do
      run("keygen --out " .. q(t.dir .. "/" .. who))
    end
    -- robot$PFX_station_i: its own project and the next one
    for i = 0, 3 do
      local user = "robot$" .. (i == 0 and pfx .. "_creator" or t.project[i])
      local password = pht.hex(pht.random(12))
      local access = { [t.project[i == 0 and 4 or i] .. "/*"] = { "pull", "push" } }
      if i == 0 then access[t.project[1] .. "/*"] = { "pull", "push" } end
      if i > 0 then access[t.project[i + 1] .. "/*"] = { "pull", "push" } end
      local file = support.token_user(svc, user, { password = password, access = access })
      t.creds[i] = user .. ":" .. password
      t.files = t.files or {}
      t.files[#t.files + 1] = file
    end
    helpers.run("mkdir -p " .. q(t.dir .. "/files"))
    helpers.write(t.dir .. "/files/entrypoint.sh", "#!/bin/sh\necho run\n")
    local route = ""
    for i = 1, 3 do route = route .. " --station " .. q("s" .. i .. "=" .. t.dir .. "/s" .. i .. ".pub.pem") end
    t.ref = function(i) return "docker://" .. svc.addr .. "/" .. t.project[i] .. "/train:latest" end
    t.reg = function(i) return " --cert-dir " .. q(svc.cert_dir) .. " --creds " .. q(t.creds[i]) end
    run("build -q --files " .. q(t.dir .. "/files") .. route .. " --creator-id 7 --creator-key "
      .. q(t.dir .. "/creator.pem") .. " --base " .. q("oci:" .. assert(support.base_image_oci()) .. ":latest")
      .. " --output " .. q(t.ref(1)) .. t.reg(0), { PHT_CACHE_DIR = t.dir .. "/cache-creator" })
    local m = pht.json_decode(helpers.read(support.base_image_oci() .. "/index.json")).manifests[1]
    local base = pht.json_decode(helpers.read(support.base_image_oci() .. "/blobs/sha256/" .. m.digest:sub(8)))
    t.base_layers = {}
    for _, l in ipairs(base.layers) do t.base_layers[#t.base_layers + 1] = l.digest end
    route_state = t
    return t
  end

  teardown(function()
    for _, f in ipairs(route_state and route_state.files or {}) do os.remove(f) end
  end)

  for i = 1, 3 do
    it("station " .. i .. " pulls from its project, runs, and pushes into the next, mounting the base layers", function()
      local t = prepare()
      local env = { PHT_CACHE_DIR = t.dir .. "/cache-s" .. i }
      local station = " --station s" .. i .. " --key " .. q(t.dir .. "/s" .. i .. ".pem")
      local work = "oci:" .. t.dir .. "/work" .. i .. ":train"
      run("pre-run -q " .. q(t.ref(i)) .. " --output " .. q(work) .. station .. t.reg(i), env)

      -- the stand-in run: the results of visit i on top of what pre-run decrypted
      local img = assert(pht.open_image(work))
      local count = tonumber(img:read_file("/opt/pht_results/count.txt") or "0") or 0
      local visits = count > 0 and assert(img:read_file("/opt/pht_results/visits.txt")) or ""
      local w = assert(img:writer())
      assert(w:add_dir("/opt/pht_results", { opaque = true }))
      assert(w:add_bytes("/opt/pht_results/count.txt", (count + 1) .. "\n"))
      assert(w:add_bytes("/opt/pht_results/visits.txt", visits .. "visit " .. i .. ": " .. SECRET .. "\n"))
      assert(w:commit(work))
      w:close()
      img:close()

      local before = helpers.run("skopeo inspect --raw --cert-dir " .. q(t.svc.cert_dir) .. " --creds "
        .. q(t.creds[i]) .. " " .. q(t.ref(i)))
      run("post-run -q " .. q(work) .. " --output " .. q(t.ref(i + 1)) .. station .. t.reg(i), env)

      -- the base layers were mounted (or were there), only the new layer and the config went up
      local how, patches = arrivals(t.svc, t.project[i + 1])
      for _, d in ipairs(t.base_layers) do
        assert.is_truthy(how[d] == "mounted" or how[d] == "skipped", d .. " reached "
          .. t.project[i + 1] .. " as " .. tostring(how[d]))
      end
      assert.are.equal(2, patches, "uploads into " .. t.project[i + 1])
      -- skopeo reads what was pushed; the source was left as it was
      local info = pht.json_decode(helpers.run("skopeo inspect --cert-dir " .. q(t.svc.cert_dir)
        .. " --creds " .. q(t.creds[i]) .. " " .. q(t.ref(i + 1))))
      assert.are.equal(t.base_layers[1], info.Layers[1])
      assert.are.equal(before, helpers.run("skopeo inspect --raw --cert-dir " .. q(t.svc.cert_dir)
        .. " --creds " .. q(t.creds[i]) .. " " .. q(t.ref(i))))
      -- no plaintext result in any layer of the pushed train
      local copy = helpers.tmpdir() .. "/copy"
      helpers.run("skopeo copy -q --src-cert-dir " .. q(t.svc.cert_dir) .. " --src-creds " .. q(t.creds[i])
        .. " " .. q(t.ref(i + 1)) .. " " .. q("oci:" .. copy .. ":t"))
      assert.are.equal("", helpers.run("for b in " .. q(copy) .. "/blobs/sha256/*; do "
        .. "(zcat -f \"$b\" 2>/dev/null || cat \"$b\") | grep -l -F " .. q(SECRET) .. " - || true; done"))
    end)
  end

  it("ends with the creator decrypting the three visits' results from its project", function()
    local t = prepare()
    local out = t.dir .. "/results"
    run("decrypt-results -q " .. q(t.ref(4)) .. " --key " .. q(t.dir .. "/creator.pem") .. " --out "
      .. q(out) .. t.reg(0), { PHT_CACHE_DIR = t.dir .. "/cache-creator" })
    assert.are.equal("3\n", helpers.read(out .. "/count.txt"))
    assert.are.equal("visit 1: " .. SECRET .. "\nvisit 2: " .. SECRET .. "\nvisit 3: " .. SECRET .. "\n",
      helpers.read(out .. "/visits.txt"))
  end)
end)
