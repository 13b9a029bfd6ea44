-- No plaintext reachable in an OCI layout after post-run: the station's
-- round with skopeo and the real dockerd (pre-run into oci:L:latest, skopeo
-- copy into the engine, docker run and commit, skopeo copy back, post-run)
-- leaves the pre-run manifest untagged in index.json; post-run removes it
-- and its blobs, and pht inspect fails a layout that still holds one.
-- Every blob is scanned (zcat -f) for marker strings of the algorithm and
-- of the results.
local helpers = require "helpers"
local pht = require "pht"
local support = require "support"
local S = require "wf_support"

local q = helpers.q

-- The blobs of layout dir whose bytes (decompressed when gzip) hold any of
-- the markers: a list of blob names.
local function blobs_holding(dir, markers)
  local pat = {}
  for _, m in ipairs(markers) do pat[#pat + 1] = "-e " .. q(m) end
  local out = helpers.run("for b in " .. q(dir) .. "/blobs/sha256/*; do "
    .. "if zcat -f \"$b\" | grep -q -a -F " .. table.concat(pat, " ") .. "; then basename \"$b\"; fi; done")
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

local function index_of(dir)
  return assert(pht.json_decode(helpers.read(dir .. "/index.json")))
end

local function tags_of(dir)
  local tags, untagged = {}, 0
  for _, d in ipairs(index_of(dir).manifests) do
    local name = d.annotations and d.annotations["org.opencontainers.image.ref.name"]
    if name then tags[#tags + 1] = name else untagged = untagged + 1 end
  end
  table.sort(tags)
  return tags, untagged
end

-- The check of an inspect --json report with that name.
local function check_named(report, name)
  for _, c in ipairs(report.checks) do if c.name == name then return c end end
end

local function inspect_json(ref)
  local code, out, err = S.pht("inspect --json " .. q(ref))
  return code, pht.json_decode(out), err
end

describe("an OCI layout on the station's round through the Docker engine", function()
  local ready, why = support.containers_available()
  local host = support.docker_host()
  local dir, ref, images = nil, nil, {}
  local markers
  -- The run computes the results' marker, so the command line docker commit
  -- records in the image config (Cmd) does not hold it.
  local t = os.time()
  local result_marker = "PHT-RESULT-MARKER-" .. tostring(t * 7)
  local result_cmd = "echo PHT-RESULT-MARKER-$((" .. tostring(t) .. "*7))"

  -- skopeo copy between the layout and the engine (skopeo needs the daemon
  -- host named: it does not read DOCKER_HOST for docker-daemon:).
  local function to_engine(tag_in_layout, image)
    images[#images + 1] = image
    helpers.run("skopeo copy -q --dest-daemon-host " .. q(host) .. " " .. q("oci:" .. dir .. ":" .. tag_in_layout)
      .. " " .. q("docker-daemon:" .. image))
  end
  local function from_engine(image, tag_in_layout)
    helpers.run("skopeo copy -q --src-daemon-host " .. q(host) .. " " .. q("docker-daemon:" .. image)
      .. " " .. q("oci:" .. dir .. ":" .. tag_in_layout))
  end
  -- docker run a command in image and commit the container over image.
  local function rm_container_then_commit(image, script)
    local name = support.unique_name("ocirun")
    local ok, out = support.docker("run --name " .. name .. " --network none " .. q(image) .. " /bin/sh -c " .. q(script))
    assert(ok, out)
    ok, out = support.docker("commit " .. name .. " " .. q(image))
    support.docker("rm -f " .. name)
    assert(ok, out)
  end

  setup(function()
    if not ready then return end
    dir = helpers.tmpdir() .. "/layout"
    ref = "oci:" .. dir .. ":latest"
    -- markers: a line of the decrypted algorithm (the entrypoint), and
    -- what the run writes besides the entrypoint's own results
    markers = { assert(S.expected().entrypoint:match("\n(mkdir %-p [^\n]+)\n")), result_marker }
    local code, _, err = S.pht("pre-run -q " .. q("docker-archive:" .. helpers.vectors .. "/" .. S.stages[0]) .. " "
      .. S.station_args(1) .. " --output " .. q(ref))
    assert(code == 0, err)
    local image = support.unique_name("oci-round") .. ":latest"
    to_engine("latest", image)
    -- the train's command, as doc/station-guide.md runs it, and one more file
    rm_container_then_commit(image, "/bin/sh /opt/pht_train/entrypoint.sh && " .. result_cmd
      .. " > /opt/pht_results/marker.txt")
    from_engine(image, "latest")
  end)

  teardown(function()
    for _, image in ipairs(images) do support.docker("rmi -f " .. q(image)) end
    if dir then helpers.run("rm -rf " .. q(dir)) end
  end)

  it("holds the pre-run manifest untagged beside the committed one, its blobs readable (the starting point)", function()
    if not ready then return pending(why) end
    local tags, untagged = tags_of(dir)
    assert.same({ "latest" }, tags)
    assert.is_true(untagged >= 1)
    assert.is_true(#blobs_holding(dir, { markers[1] }) > 0, "the algorithm's plaintext is in a blob")
    assert.is_true(#blobs_holding(dir, { markers[2] }) > 0, "the results' plaintext is in a blob")
  end)

  it("fails pht inspect: the image itself and the untagged one beside it hold plaintext", function()
    if not ready then return pending(why) end
    local code, report, err = inspect_json(ref)
    assert.equal(1, code, err)
    assert.is_false(report.ok)
    assert.is_false(check_named(report, "no_plaintext").ok)
    local beside = check_named(report, "no_plaintext_beside")
    assert.is_false(beside.ok)
    assert.matches("untagged", beside.message)
    assert.matches("pre%-run decrypted", beside.message)
  end)

  it("post-run removes every manifest holding plaintext, says so, and no blob holds a marker", function()
    if not ready then return pending(why) end
    local code, _, err = S.pht("post-run " .. q(ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    assert.matches("removed image sha256:%x+ %(untagged%) from ", err)
    assert.matches("removed %d+ blob%(s%) only those images used", err)
    local tags, untagged = tags_of(dir)
    assert.same({ "latest" }, tags)
    assert.equal(0, untagged)
    assert.same({}, blobs_holding(dir, markers))
    -- every blob left is one the layout references: umoci gc finds nothing to do
    local before = helpers.run("ls " .. q(dir .. "/blobs/sha256") .. " | wc -l")
    helpers.run("umoci gc --layout " .. q(dir))
    assert.equal(before, helpers.run("ls " .. q(dir .. "/blobs/sha256") .. " | wc -l"))
    -- and pht inspect passes it
    local icode, report, ierr = inspect_json(ref)
    assert.equal(0, icode, ierr)
    assert.is_true(check_named(report, "no_plaintext_beside").ok)
    -- the train goes on: the next station's pre-run verifies it
    local ok_copy = helpers.tmpdir() .. "/next"
    helpers.run("cp -a " .. q(dir) .. " " .. q(ok_copy))
    local ncode, _, nerr = S.pht("pre-run -q " .. q("oci:" .. ok_copy .. ":latest") .. " " .. S.station_args(2))
    assert.equal(0, ncode, nerr)
    helpers.run("rm -rf " .. q(ok_copy))
  end)

  it("fails pht inspect for another image whose layer holds results that are not the train's ciphertext", function()
    if not ready then return pending(why) end
    -- after post-run: the encrypted train, run again in the engine without
    -- pre-run, its plaintext results committed and copied back as :stale
    local image = support.unique_name("oci-stale") .. ":latest"
    to_engine("latest", image)
    rm_container_then_commit(image, result_cmd .. " > /opt/pht_results/out.txt")
    from_engine(image, "stale")
    local code, report, err = inspect_json(ref)
    assert.equal(1, code, err)
    local beside = check_named(report, "no_plaintext_beside")
    assert.is_false(beside.ok)
    assert.matches("tag stale", beside.message)
    assert.matches("/opt/pht_results", beside.message)
    -- the encrypted train itself is fine
    assert.is_nil(check_named(report, "no_plaintext"))
  end)
end)

describe("pht inspect of a docker-archive", function()
  it("fails when another image of the archive holds the layer pre-run decrypted", function()
    local archive, aref = S.copy_stage(0)
    local code, _, err = S.pht("pre-run -q " .. q(aref) .. " " .. S.station_args(1) .. " --output "
      .. q("docker-archive:" .. archive .. ":pht/decrypted:latest"))
    assert.equal(0, code, err)
    local icode, report, ierr = inspect_json("docker-archive:" .. archive .. ":" .. S.repo_tag)
    assert.equal(1, icode, ierr)
    local beside = check_named(report, "no_plaintext_beside")
    assert.is_false(beside.ok)
    assert.matches("pht/decrypted:latest", beside.message)
  end)
end)

describe("post-run into a docker-archive", function()
  it("drops the archive's other images that pre-run marked, says so, and no byte of the archive holds the algorithm", function()
    local archive, aref = S.copy_stage(0)
    local train_ref = "docker-archive:" .. archive .. ":" .. S.repo_tag
    -- a decrypted copy under another name, beside the train
    local code, _, err = S.pht("pre-run -q " .. q(aref) .. " " .. S.station_args(1) .. " --output "
      .. q("docker-archive:" .. archive .. ":pht/decrypted:latest"))
    assert.equal(0, code, err)
    -- the station's own round on the train
    code, _, err = S.pht("pre-run -q " .. q(train_ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    S.run_reference_train(train_ref, 1)
    local marker = assert(S.expected().entrypoint:match("\n(mkdir %-p [^\n]+)\n"))
    assert.is_true(helpers.sh("grep -q -a -F " .. q(marker) .. " " .. q(archive)), "plaintext before post-run")
    code, _, err = S.pht("post-run " .. q(train_ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    assert.matches("removed image @%d+ %(pht/decrypted:latest%) from ", err)
    assert.is_false(helpers.sh("grep -q -a -F " .. q(marker) .. " " .. q(archive)), "plaintext after post-run")
    local names = helpers.run("tar xOf " .. q(archive) .. " manifest.json")
    assert.is_nil(names:find("pht/decrypted", 1, true))
    local icode, report, ierr = inspect_json(train_ref)
    assert.equal(0, icode, ierr)
    assert.is_true(check_named(report, "no_plaintext_beside").ok)
  end)
end)
