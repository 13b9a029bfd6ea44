-- Trusted master images (doc/station-guide.md, "Trusted master images"): a
-- station names the images its trains must be built on (--master), and
-- pre-run refuses at check_master, before any key is used and writing
-- nothing, a train whose layers above the master replace a binary, add a
-- file under /etc or /usr, delete a file of the master, add a setuid file,
-- or that was built on another base. Trains `pht build` made on the master
-- pass a two-station route, with and without post-run --rebase (onto the
-- master). Each transport changes its trains with the tools a station's
-- neighbour would use: libpht's own image writer for docker-archive, umoci
-- (unpack, change the rootfs, repack) for an OCI layout, and `docker run`
-- plus `docker commit` in the real Docker engine; a docker:// train is
-- changed through libpht's registry transport, its master pulled by digest.
local helpers = require "helpers"
local support = require "support"
local S = require "wf_support"
local D = require "daemon_support"
local pht = require "pht"

local q = helpers.q

local ENTRYPOINT = "#!/bin/sh\necho ran > /opt/pht_results/out.txt\n"

-- Keys of the creator and two stations, and the train's files, made once.
local keys
local function keydir()
  if keys then return keys end
  keys = helpers.tmpdir()
  for _, who in ipairs({ "creator", "s1", "s2" }) do
    assert.equal(0, (S.pht("keygen --out " .. q(keys .. "/" .. who))))
  end
  helpers.run("mkdir -p " .. q(keys .. "/files"))
  helpers.write(keys .. "/files/entrypoint.sh", ENTRYPOINT)
  return keys
end

local function station(n)
  return " --station s" .. n .. " --key " .. q(keydir() .. "/s" .. n .. ".pem")
end

-- `pht build` of the train on base into out.
local function build(base, out, env)
  local k = keydir()
  local code, _, err = S.pht("build -q --files " .. q(k .. "/files")
    .. " --station " .. q("s1=" .. k .. "/s1.pub.pem") .. " --station " .. q("s2=" .. k .. "/s2.pub.pem")
    .. " --creator-id 7 --creator-key " .. q(k .. "/creator.pem")
    .. " --base " .. q(base) .. " --output " .. q(out), env)
  assert.equal(0, code, err)
end

-- What a station's neighbour does to a train, per attack: the shell run in
-- the train's root file system (umoci's rootfs, a container), and the path
-- the refusal must name. The docker-archive variant writes the same change
-- with libpht's image writer.
local ATTACKS = {
  { name = "replaces /bin/sh", path = "/bin/sh",
    sh = "rm -f bin/sh && printf '#!/bin/busybox sh\\necho owned\\n' > bin/sh && chmod 755 bin/sh",
    write = function(w) assert(w:add_bytes("/bin/sh", "#!/bin/busybox sh\necho owned\n", { mode = 493 })) end },
  { name = "adds a file under /etc", path = "/etc/ld.so.preload",
    sh = "echo /tmp/x.so > etc/ld.so.preload",
    write = function(w) assert(w:add_bytes("/etc/ld.so.preload", "/tmp/x.so\n")) end },
  { name = "adds a file under /usr", path = "/usr/lib/sitecustomize.py",
    sh = "mkdir -p usr/lib && echo 'import os' > usr/lib/sitecustomize.py",
    write = function(w)
      assert(w:add_dir("/usr/lib"))
      assert(w:add_bytes("/usr/lib/sitecustomize.py", "import os\n"))
    end },
  { name = "deletes a file of the master (a whiteout)", path = "/etc/passwd", why = "whiteout",
    sh = "rm etc/passwd",
    write = function(w) assert(w:whiteout("/etc/passwd")) end },
  { name = "adds a setuid file", path = "/opt/pht_train/helper", why = "setuid",
    sh = "cp bin/busybox opt/pht_train/helper && chmod 4755 opt/pht_train/helper",
    write = function(w) assert(w:add_bytes("/opt/pht_train/helper", "\127ELF", { mode = 2541 })) end },
  -- what libpht's writer cannot write: the changes of a rootfs only
  { name = "adds a FIFO under /opt", path = "/opt/pht_results/pipe", why = "FIFO",
    sh = "mkfifo opt/pht_results/pipe" },
  -- umoci and docker commit write the linked binary again (its link count
  -- changed) before the link: that rewrite outside /opt is what is named
  { name = "hard-links a binary of the master into /opt", path = "/bin/busybox", why = "outside /opt",
    sh = "ln bin/busybox opt/pht_train/bb" },
}

-- The refusal: exit 1 at check_master, naming the path and the layer, the
-- input unchanged (snapshot() before and after), nothing decrypted.
local function refused(args, snapshot, path, why, env)
  local before = snapshot()
  local code, out, err = S.pht("pre-run " .. args, env)
  assert.equal(1, code, err)
  assert.matches("pre-run failed at step check_master: ", err, 1, true)
  assert.matches('"' .. path .. '"', err, 1, true)
  assert.matches("layer %d+ of %d+ %(sha256:%x+%)", err)
  if why then assert.matches(why, err, 1, true) end
  assert.not_matches("decrypt_train", err, 1, true)
  assert.equal("", out)
  assert.equal(before, snapshot(), "the input changed")
  return err
end

local function sha_file(path) return function() return helpers.sha256_file(path) end end

-- An OCI layout as a string: index.json and the blobs it holds.
local function layout_state(dir)
  return function()
    return helpers.read(dir .. "/index.json") .. helpers.run("ls " .. q(dir .. "/blobs/sha256"))
  end
end

-- The layers an image has, by skopeo (any transport skopeo reads).
local function skopeo_layers(ref)
  local out = helpers.stdout("skopeo inspect --config " .. q(ref))
  return assert(pht.json_decode(out)).rootfs.diff_ids
end

-- The route passes: s1 pre-run and post-run (rebase: onto the master), then
-- s2 pre-run, each with --master.
local function route(ref, master, rebase, env, after_post)
  local m = " --master " .. q(master)
  local code, _, err = S.pht("pre-run -q " .. q(ref) .. station(1) .. m, env)
  assert.equal(0, code, err)
  code, _, err = S.pht("post-run -q " .. q(ref) .. station(1) .. m .. (rebase and " --rebase" or ""), env)
  assert.equal(0, code, err)
  if after_post then after_post() end
  code, _, err = S.pht("pre-run -q " .. q(ref) .. station(2) .. m, env)
  assert.equal(0, code, err)
end

-- Remove one name from a docker-archive's manifest.json, with tar.
local function drop_tag(path, tag)
  local d = helpers.tmpdir()
  helpers.run("tar -xf " .. q(path) .. " -C " .. q(d))
  local manifest = S.decode(helpers.read(d .. "/manifest.json"))
  for _, m in ipairs(manifest) do
    local keep = {}
    for _, t in ipairs(m.RepoTags or {}) do if t ~= tag then keep[#keep + 1] = t end end
    m.RepoTags = keep
  end
  helpers.write(d .. "/manifest.json", S.encode(manifest))
  helpers.run("tar -cf " .. q(path) .. " -C " .. q(d) .. " .")
end

describe("check_master on docker-archive trains", function()
  local base_path, master, dir

  setup(function()
    base_path = assert(support.base_image())
    master = "docker-archive:" .. base_path
    dir = helpers.tmpdir()
  end)

  local n = 0
  local function train()
    n = n + 1
    local path = dir .. "/train" .. n .. ".tar"
    build(master, "docker-archive:" .. path .. ":pht/master:latest")
    return path, "docker-archive:" .. path .. ":pht/master:latest"
  end

  local function tamper(ref, write)
    local img = assert(pht.open_image(ref))
    local w = assert(img:writer({}))
    write(w)
    assert(w:commit(ref, { history = "tampered" }))
    img:close()
  end

  for _, a in ipairs(ATTACKS) do
    if a.write then it("refuses a train whose layer above the master " .. a.name, function()
      local path, ref = train()
      tamper(ref, a.write)
      local err = refused(q(ref) .. station(1) .. " --master " .. q(master), sha_file(path), a.path, a.why)
      local layers = skopeo_layers(ref)
      assert.matches("layer " .. #layers .. " of " .. #layers, err, 1, true)
    end) end
  end

  it("refuses a train built on another base, naming the first layer that differs", function()
    local other = dir .. "/other.tar"
    local img = assert(pht.open_image(master))
    local w = assert(img:writer({ keep_layers = 0 }))
    assert(w:add_bytes("/bin/busybox", "another base\n", { mode = 493 }))
    assert(w:commit("docker-archive:" .. other .. ":other/base:latest", {}))
    img:close()
    local path = dir .. "/on-other.tar"
    local ref = "docker-archive:" .. path .. ":pht/other:latest"
    build("docker-archive:" .. other .. ":other/base:latest", ref)
    local before = helpers.sha256_file(path)
    local code, _, err = S.pht("pre-run " .. q(ref) .. station(1) .. " --master " .. q(master))
    assert.equal(1, code, err)
    assert.matches("pre-run failed at step check_master: ", err, 1, true)
    assert.matches("layer 1 of 2 (sha256:", err, 1, true)
    assert.matches("is not layer 1 of master " .. master, err, 1, true)
    assert.matches("not built on it", err, 1, true)
    assert.equal(before, helpers.sha256_file(path))
  end)

  it("passes a train pht build made on the master over the route, post-run keeping its layers", function()
    local _, ref = train()
    route(ref, master, false)
  end)

  it("passes the route with post-run --rebase onto the master, not REPO:base", function()
    local path, ref = train()
    drop_tag(path, "pht/master:base") -- only the master can be the base now
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. station(1))))
    local code, _, err = S.pht("post-run -q " .. q(ref) .. station(1) .. " --rebase")
    assert.equal(1, code)
    assert.matches("pht/master:base", err, 1, true)
    path, ref = train()
    drop_tag(path, "pht/master:base")
    route(ref, master, true, nil, function()
      local layers = skopeo_layers(ref)
      local ml = skopeo_layers(master)
      assert.equal(#ml + 1, #layers)
      for i = 1, #ml do assert.equal(ml[i], layers[i]) end
    end)
  end)

  it("takes the masters from a station script's options.masters, as policy", function()
    local path, ref = train()
    tamper(ref, ATTACKS[1].write)
    local script = dir .. "/masters.lua"
    helpers.write(script, "return function(wf, ctx)\n  ctx.options.masters = ctx.options.masters or {}\n"
      .. "  table.insert(ctx.options.masters, " .. string.format("%q", master) .. ")\nend\n")
    refused(q(ref) .. station(1) .. " --script " .. q(script), sha_file(path), "/bin/sh")
  end)

  it("refuses through pht.verify with opts.masters, naming check_master", function()
    local _, ref = train()
    tamper(ref, ATTACKS[4].write)
    local report = assert(require("pht.verify").train(ref, { station = "s1", key_path = keydir() .. "/s1.pem",
      masters = { master } }))
    assert.is_false(report.ok)
    assert.equal("check_master", report.failed_step)
    assert.matches('"/etc/passwd"', report.message, 1, true)
  end)

  it("without --master pre-run skips the check and accepts the hostile train, as before", function()
    local _, ref = train()
    tamper(ref, ATTACKS[1].write)
    local code, _, err = S.pht("pre-run -v " .. q(ref) .. station(1))
    assert.equal(0, code, err)
    assert.matches("check_master: skipped %(no master image given", err)
  end)

  it("accepts the train when one of several masters matches, and names every one when none does", function()
    local _, ref = train()
    local other = dir .. "/other2.tar"
    local img = assert(pht.open_image(master))
    local w = assert(img:writer({}))
    assert(w:add_bytes("/etc/issue", "x\n"))
    assert(w:commit("docker-archive:" .. other .. ":other/two:latest", {}))
    img:close()
    local code, json, err = S.pht("inspect --json " .. q(ref) .. " --master " .. q("docker-archive:" .. other)
      .. " --master " .. q(master))
    assert.equal(0, code, err)
    local report = assert(pht.json_decode(json))
    assert.is_true(report.master.checked)
    assert.equal(master, report.master.matched)
    tamper(ref, ATTACKS[2].write)
    local out
    code, out = S.pht("inspect " .. q(ref) .. " --master " .. q("docker-archive:" .. other)
      .. " --master " .. q(master))
    assert.equal(1, code)
    assert.matches("master: the train keeps to none of the station's 2 master images", out, 1, true)
    assert.matches("\"/etc/ld.so.preload\"", out, 1, true)
    assert.matches("FAIL", out, 1, true)
  end)
end)

describe("check_master on OCI layouts changed with umoci", function()
  local master, dir

  setup(function()
    master = "oci:" .. assert(support.base_image_oci()) .. ":latest"
    dir = helpers.tmpdir()
  end)

  local n = 0
  local function train()
    n = n + 1
    local layout = dir .. "/train" .. n
    build(master, "oci:" .. layout .. ":latest")
    return layout, "oci:" .. layout .. ":latest"
  end

  -- umoci unpack, a shell in the rootfs, umoci repack: one new layer.
  local function umoci_change(layout, tag, sh)
    local bundle = helpers.tmpdir() .. "/bundle"
    helpers.run("umoci unpack --image " .. q(layout .. ":" .. tag) .. " " .. q(bundle))
    helpers.run("cd " .. q(bundle .. "/rootfs") .. " && " .. sh)
    helpers.run("umoci repack --image " .. q(layout .. ":" .. tag) .. " " .. q(bundle))
    helpers.run("rm -rf " .. q(bundle))
  end

  for _, a in ipairs(ATTACKS) do
    it("refuses a train whose layer above the master " .. a.name, function()
      local layout, ref = train()
      umoci_change(layout, "latest", a.sh)
      local err = refused(q(ref) .. station(1) .. " --master " .. q(master), layout_state(layout), a.path, a.why)
      local layers = skopeo_layers(ref)
      assert.matches("layer " .. #layers .. " of " .. #layers, err, 1, true)
    end)
  end

  it("refuses a train built on another base umoci made from scratch", function()
    local other = dir .. "/other"
    helpers.run("umoci init --layout " .. q(other) .. " && umoci new --image " .. q(other .. ":base"))
    local bundle = helpers.tmpdir() .. "/bundle"
    helpers.run("umoci unpack --image " .. q(other .. ":base") .. " " .. q(bundle))
    helpers.run("cd " .. q(bundle .. "/rootfs") .. " && mkdir -p bin opt etc && printf 'x\\n' > bin/busybox"
      .. " && chmod 755 bin/busybox && ln -s busybox bin/sh && echo 'root:x:0:0::/:/bin/sh' > etc/passwd")
    helpers.run("umoci repack --image " .. q(other .. ":base") .. " " .. q(bundle))
    local layout = dir .. "/on-other"
    local ref = "oci:" .. layout .. ":latest"
    build("oci:" .. other .. ":base", ref)
    local before = layout_state(layout)()
    local code, _, err = S.pht("pre-run " .. q(ref) .. station(1) .. " --master " .. q(master))
    assert.equal(1, code, err)
    assert.matches("pre-run failed at step check_master: ", err, 1, true)
    assert.matches("layer 1 of 2 (sha256:", err, 1, true)
    assert.matches("is not layer 1 of master " .. master, err, 1, true)
    assert.equal(before, layout_state(layout)())
  end)

  it("passes a train pht build made on the master over the route", function()
    local _, ref = train()
    route(ref, master, false)
  end)

  it("passes the route with post-run --rebase onto the master", function()
    local _, ref = train()
    route(ref, master, true, nil, function()
      local layers, ml = skopeo_layers(ref), skopeo_layers(master)
      assert.equal(#ml + 1, #layers)
      for i = 1, #ml do assert.equal(ml[i], layers[i]) end
    end)
  end)
end)

describe("check_master in the Docker engine, trains changed with docker run and docker commit", function()
  local master, master_id, repo, made = nil, nil, nil, {}

  local function ready()
    local ok, why = D.ready(true)
    if not ok then return false, why end
    if not master then
      master = assert(support.load_base_image())
      master_id = assert(D.id(master))
      repo = support.unique_name("tb")
    end
    return true
  end

  teardown(function()
    if not repo then return end
    for _, name in ipairs(made) do support.docker("rm -f " .. q(name)) end
    for i = 1, 20 do D.rmi(repo .. "-" .. i .. ":latest", repo .. "-" .. i .. ":base") end
    support.docker("rmi " .. q(repo .. "-other:latest"))
  end)

  local n = 0
  local function train()
    n = n + 1
    local name = repo .. "-" .. n .. ":latest"
    build("docker-daemon:" .. master, name, D.env())
    return name
  end

  -- A container of image runs sh in /, then docker commit makes its change the top layer.
  -- The container stays running until committed (docker commit pauses it),
  -- so nothing that sweeps exited containers on a shared engine can take it.
  local function run_and_commit(image, entrypoint, sh)
    local c = support.unique_name("tb-run")
    made[#made + 1] = c
    D.docker("run -d --name " .. q(c) .. " --network none --entrypoint " .. entrypoint .. " " .. q(image)
      .. " sh -c " .. q(sh .. " && echo pht-changed && exec sleep 300"))
    for _ = 1, 100 do
      if D.docker("logs " .. q(c)):find("pht-changed", 1, true) then break end
      helpers.run("sleep 0.1")
    end
    assert.matches("pht-changed", D.docker("logs " .. q(c)), 1, true)
    D.docker("commit " .. q(c) .. " " .. q(image))
    D.docker("rm -f " .. q(c))
  end

  local function docker_change(image, sh)
    run_and_commit(image, "/bin/busybox", "cd / && " .. sh)
  end

  for _, a in ipairs(ATTACKS) do
    it("refuses a train whose layer above the master " .. a.name, function()
      local ok, why = ready()
      if not ok then return pending(why) end
      local name = train()
      docker_change(name, a.sh)
      -- the master by its image id: a digest pins it
      refused(q(name) .. station(1) .. " --master " .. q(master_id), function() return D.id(name) end,
        a.path, a.why, D.env())
    end)
  end

  -- The layers above the master are read from the engine's overlay2 store
  -- (core/src/daemon_store.c) where it can: the check saves nothing. With
  -- PHT_DOCKER_STORE=0 it saves the image and reads the same headers in
  -- their tars, to the same finding.
  local function store_ready()
    local ok, why = ready()
    if not ok then return false, why end
    local driver = D.driver()
    if driver ~= "overlay2" then
      return false, "the engine's storage driver is " .. tostring(driver)
        .. ": the check saves the image there (the attacks above)"
    end
    return true
  end

  it("reads the layers above the master from the engine's overlay2 store, saving nothing,"
    .. " and finds what a save finds", function()
    local ok, why = store_ready()
    if not ok then return pending(why) end
    local name = train()
    local t0 = D.now()
    local code, _, err = S.pht("pre-run -q " .. q(name) .. station(1) .. " --master " .. q(master_id), D.env())
    assert.equal(0, code, err)
    local t1 = D.now()
    assert.equal(0, D.saves(t0, t1), "the check of a train built on the master saved an image")
    name = train()
    docker_change(name, ATTACKS[1].sh)
    local args = q(name) .. station(1) .. " --master " .. q(master_id)
    local t2 = D.now()
    local from_store = refused(args, function() return D.id(name) end, "/bin/sh", nil, D.env())
    local t3 = D.now()
    assert.equal(0, D.saves(t2, t3), "the check saved the image")
    local env = D.env()
    env.PHT_DOCKER_STORE = "0"
    local from_save = refused(args, function() return D.id(name) end, "/bin/sh", nil, env)
    assert.is_true(D.saves(t3, D.now()) >= 1, "PHT_DOCKER_STORE=0 did not save the image")
    assert.equal(from_save, from_store)
  end)

  it("refuses a train whose layer above the master empties /root (an opaque directory in the store)",
    function()
    local ok, why = store_ready()
    if not ok then return pending(why) end
    -- a naive diff (docker commit comparing trees) whites out each file instead
    if not D.docker("info --format '{{json .DriverStatus}}'"):find('"Native Overlay Diff","true"', 1, true) then
      return pending("the engine's overlay2 has no native diff: docker commit writes no opaque directory")
    end
    local name = train()
    -- (and a file under /opt: a layer of size 0 makes the open save the image for its history)
    docker_change(name, "rm -rf root && mkdir -m 700 root && echo x > opt/pht_results/x")
    local args = q(name) .. station(1) .. " --master " .. q(master_id)
    local err = refused(args, function() return D.id(name) end, "/root", "opaque", D.env())
    local env = D.env()
    env.PHT_DOCKER_STORE = "0"
    assert.equal(err, refused(args, function() return D.id(name) end, "/root", "opaque", env))
  end)

  it("refuses a train built on another base (docker export | docker import of the master)", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    local c = support.unique_name("tb-export")
    made[#made + 1] = c
    D.docker("create --name " .. q(c) .. " " .. q(master) .. " /bin/busybox true")
    local tarball = helpers.tmpdir() .. "/rootfs.tar"
    D.docker("export -o " .. q(tarball) .. " " .. q(c))
    D.docker("rm " .. q(c))
    local other = repo .. "-other:latest"
    D.docker("import " .. q(tarball) .. " " .. q(other))
    n = n + 1
    local name = repo .. "-" .. n .. ":latest"
    build("docker-daemon:" .. other, name, D.env())
    local before = D.id(name)
    local code, _, err = S.pht("pre-run " .. q(name) .. station(1) .. " --master " .. q(master), D.env())
    assert.equal(1, code, err)
    assert.matches("pre-run failed at step check_master: ", err, 1, true)
    assert.matches("layer 1 of 2 (sha256:", err, 1, true)
    assert.matches("not built on it", err, 1, true)
    assert.equal(before, D.id(name))
  end)

  local function engine_layers(image)
    return assert(pht.json_decode(D.docker("image inspect --format '{{json .RootFS.Layers}}' " .. q(image))))
  end

  it("pht run --master takes a train built on the master through a round, sealed on the master's layers",
    function()
    local ok, why = ready()
    if not ok then return pending(why) end
    local name = train()
    local m = " --master " .. q("docker-daemon:" .. master)
    local code, _, err = S.pht("run -q " .. q(name) .. station(1) .. m, D.env())
    assert.equal(0, code, err)
    -- rebased onto the master it matched: its layers and one of /opt
    local layers, ml = engine_layers(name), engine_layers(master)
    assert.equal(#ml + 1, #layers)
    for i = 1, #ml do assert.equal(ml[i], layers[i]) end
    code, _, err = S.pht("pre-run -q " .. q(name) .. station(2) .. m, D.env())
    assert.equal(0, code, err)
  end)

  it("pht run --master refuses a train changed above the master at pre-run's check_master, input unchanged",
    function()
    local ok, why = ready()
    if not ok then return pending(why) end
    local name = train()
    docker_change(name, ATTACKS[1].sh)
    local before = D.id(name)
    local code, _, err = S.pht("run " .. q(name) .. station(1) .. " --master " .. q(master_id), D.env())
    assert.equal(1, code, err)
    assert.matches("check_master", err, 1, true)
    assert.matches('"/bin/sh"', err, 1, true)
    assert.equal(before, D.id(name))
  end)

  for _, rebase in ipairs({ false, true }) do
    it("passes a train pht build made on the master, run with docker run and committed, over the route"
      .. (rebase and " with post-run --rebase onto the master" or ""), function()
      local ok, why = ready()
      if not ok then return pending(why) end
      local name = train()
      local m = " --master " .. q("docker-daemon:" .. master)
      local code, _, err = S.pht("pre-run -q " .. q(name) .. station(1) .. m, D.env())
      assert.equal(0, code, err)
      run_and_commit(name, "/bin/busybox", "/bin/sh /opt/pht_train/entrypoint.sh")
      code, _, err = S.pht("post-run -q " .. q(name) .. station(1) .. m .. (rebase and " --rebase" or ""), D.env())
      assert.equal(0, code, err)
      local layers, ml = engine_layers(name), engine_layers(master)
      assert.equal(#ml + (rebase and 1 or 2), #layers)
      for i = 1, #ml do assert.equal(ml[i], layers[i]) end
      code, _, err = S.pht("pre-run -q " .. q(name) .. station(2) .. m, D.env())
      assert.equal(0, code, err)
    end)
  end
end)

describe("check_master with masters and trains in a registry and an oci-archive", function()
  local addr, master_ref, base_path, dir
  local TLS = " --tls-verify false"

  local function ready()
    local a, why = support.registry()
    if not a then return false, why end
    if not addr then
      addr, dir = a, helpers.tmpdir()
      base_path = assert(support.base_image())
      local repo = addr .. "/" .. support.unique_name("master")
      helpers.run("skopeo copy -q --dest-tls-verify=false " .. q("docker-archive:" .. base_path) .. " "
        .. q("docker://" .. repo .. ":latest"))
      local digest = assert(pht.json_decode(helpers.stdout("skopeo inspect --tls-verify=false "
        .. q("docker://" .. repo .. ":latest")))).Digest
      master_ref = "docker://" .. repo .. "@" .. digest -- pinned by its manifest digest
    end
    return true
  end

  local n = 0
  local function registry_train()
    n = n + 1
    local path = dir .. "/t" .. n .. ".tar"
    build("docker-archive:" .. base_path, "docker-archive:" .. path .. ":pht/reg:latest")
    local ref = "docker://" .. addr .. "/" .. support.unique_name("train") .. ":latest"
    helpers.run("skopeo copy -q --dest-tls-verify=false " .. q("docker-archive:" .. path .. ":pht/reg:latest")
      .. " " .. q(ref))
    return ref
  end

  local function manifest_digest(ref)
    return assert(pht.json_decode(helpers.stdout("skopeo inspect --tls-verify=false " .. q(ref)))).Digest
  end

  it("passes a docker:// train against a master pulled by digest", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    local ref = registry_train()
    local code, json, err = S.pht("inspect --json " .. q(ref) .. " --master " .. q(master_ref) .. TLS)
    assert.equal(0, code, err)
    local report = assert(pht.json_decode(json))
    assert.equal(master_ref, report.master.matched)
  end)

  it("refuses a docker:// train whose layer above the master adds /etc/ld.so.preload, the tag unmoved", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    local ref = registry_train()
    local img = assert(pht.open_image(ref, { tls_verify = false }))
    local w = assert(img:writer({}))
    assert(w:add_bytes("/etc/ld.so.preload", "/tmp/x.so\n"))
    assert(w:commit(ref, { history = "tampered" }))
    img:close()
    refused(q(ref) .. station(1) .. " --master " .. q(master_ref) .. TLS, function() return manifest_digest(ref) end,
      "/etc/ld.so.preload", nil)
  end)

  it("takes an oci-archive master skopeo wrote", function()
    local ok, why = ready()
    if not ok then return pending(why) end
    local file = dir .. "/master-oci.tar"
    helpers.run("skopeo copy -q " .. q("docker-archive:" .. base_path) .. " " .. q("oci-archive:" .. file .. ":latest"))
    local path = dir .. "/for-ocia.tar"
    local ref = "docker-archive:" .. path .. ":pht/ocia:latest"
    build("docker-archive:" .. base_path, ref)
    local code, _, err = S.pht("pre-run -q " .. q(ref) .. station(1) .. " --master " .. q("oci-archive:" .. file .. ":latest"))
    assert.equal(0, code, err)
  end)
end)
