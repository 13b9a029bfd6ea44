-- Output people and programs can use: `--json` on every verb (on failure
-- too), messages that name each thing once and in an operator's words, and
-- outputs checked before the work.
local pht = require "pht"
local helpers = require "helpers"
local S = require "wf_support"
local support = require "support"
local q = helpers.q

local function json_of(out)
  local r, err = pht.json_decode(out)
  assert(r, "stdout is not one JSON object: " .. tostring(err) .. "\n" .. out)
  return r
end

-- The names of the steps of a --json report, in order, with their status.
local function step_names(r)
  local t = {}
  for _, s in ipairs(r.steps) do t[#t + 1] = s.name .. "=" .. s.status end
  return t
end

describe("--json", function()
  it("pre-run and post-run report every step, the image written and the exit code", function()
    local _, ref = S.copy_stage(0)
    local code, out, err = S.pht("pre-run -q --json " .. q(ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    local r = json_of(out)
    assert.equal("pre-run", r.verb)
    assert.is_true(r.ok)
    assert.equal(0, r.exit_code)
    assert.equal(ref, r.image)
    assert.is_true(#r.steps > 5)
    for _, s in ipairs(r.steps) do assert.is_true(s.status == "ok" or s.status == "skipped", s.name) end
    assert.equal("open_image", r.steps[1].name)
    code, out, err = S.pht("post-run -q --json " .. q(ref) .. " " .. S.station_args(1))
    assert.equal(0, code, err)
    r = json_of(out)
    assert.equal("post-run", r.verb)
    assert.is_true(r.ok)
    assert.equal(ref, r.image)
  end)

  it("a rejected train: ok false, the failed step with its message, exit 1", function()
    local _, ref = S.copy_stage(0)
    local code, out = S.pht("pre-run -q --json " .. q(ref) .. " " .. S.station_args(2))
    assert.equal(1, code)
    local r = json_of(out)
    assert.is_false(r.ok)
    assert.equal(1, r.exit_code)
    assert.equal("check_turn", r.failed_step)
    local last = r.steps[#r.steps]
    assert.equal("check_turn", last.name)
    assert.equal("failed", last.status)
    assert.truthy(last.message and #last.message > 0)
    assert.matches("failed at step check_turn", r.error, 1, true)
  end)

  it("inspect of an image that cannot be read still prints an object", function()
    local code, out = S.pht("inspect --json " .. q("docker-archive:" .. helpers.tmpdir() .. "/none.tar"))
    assert.equal(3, code)
    local r = json_of(out)
    assert.is_false(r.ok)
    assert.equal(3, r.exit_code)
    assert.matches("cannot open", r.error, 1, true)
  end)

  it("a usage error is an object too, exit 2", function()
    local code, out = S.pht("pre-run --json " .. q("docker-archive:/nonexistent.tar") .. " --station x")
    assert.equal(2, code)
    local r = json_of(out)
    assert.is_false(r.ok)
    assert.equal(2, r.exit_code)
    assert.matches("no private key", r.error, 1, true)
    assert.same({}, r.steps)
  end)

  it("keygen reports its files and the fingerprint", function()
    local prefix = helpers.tmpdir() .. "/k"
    local code, out, err = S.pht("keygen --json --out " .. q(prefix))
    assert.equal(0, code, err)
    local r = json_of(out)
    assert.is_true(r.ok)
    assert.equal(prefix .. ".pem", r.private_key)
    assert.equal(prefix .. ".pub.pem", r.public_key)
    local key = assert(pht.load_public_key(helpers.read(prefix .. ".pub.pem")))
    assert.equal(key:fingerprint(), r.fingerprint)
  end)

  it("decrypt-results and build report their steps", function()
    local _, ref = S.copy_stage(3)
    local out_dir = helpers.tmpdir() .. "/res"
    local code, out, err = S.pht("decrypt-results -q --json " .. q(ref) .. " --key " .. q(S.key("user"))
      .. " --out " .. q(out_dir))
    assert.equal(0, code, err)
    local r = json_of(out)
    assert.is_true(r.ok)
    assert.equal("decrypt-results", r.verb)
    assert.same("check_output=ok", step_names(r)[1])

    local dir = helpers.tmpdir()
    helpers.write(dir .. "/run.sh", "echo hi\n")
    assert.equal(0, (S.pht("keygen --out " .. q(dir .. "/s1"))))
    local target = "docker-archive:" .. dir .. "/t.tar:pht/json:latest"
    code, out, err = S.pht("build -q --json --file " .. q("run.sh=" .. dir .. "/run.sh")
      .. " --station " .. q("s1=" .. dir .. "/s1.pub.pem") .. " --creator-id 1 --creator-key "
      .. q(dir .. "/s1.pem") .. " --base " .. q("docker-archive:" .. assert(support.base_image()))
      .. " --output " .. q(target))
    assert.equal(0, code, err)
    r = json_of(out)
    assert.is_true(r.ok)
    assert.equal(target, r.image)
  end)
end)

describe("outputs checked before the work", function()
  it("decrypt-results --out EXISTING fails at its first step, check_output", function()
    local _, ref = S.copy_stage(3)
    local existing = helpers.tmpdir()
    local code, out = S.pht("decrypt-results -q --json " .. q(ref) .. " --key " .. q(S.key("user"))
      .. " --out " .. q(existing))
    assert.equal(3, code)
    local r = json_of(out)
    assert.same({ "check_output=failed" }, step_names(r))
    assert.matches("already exists", r.error, 1, true)
  end)

  it("build to an unreachable registry fails at check_output, before any key is loaded", function()
    local dir = helpers.tmpdir()
    helpers.write(dir .. "/run.sh", "echo hi\n")
    assert.equal(0, (S.pht("keygen --out " .. q(dir .. "/s1"))))
    local code, out = S.pht("build -q --json --file " .. q("run.sh=" .. dir .. "/run.sh")
      .. " --station " .. q("s1=" .. dir .. "/s1.pub.pem") .. " --creator-id 1 --creator-key "
      .. q(dir .. "/s1.pem") .. " --base " .. q("docker-archive:" .. assert(support.base_image()))
      .. " --output docker://127.0.0.1:1/pht/x:latest --tls-verify false")
    assert.equal(3, code)
    local r = json_of(out)
    assert.same({ "check_output=failed" }, step_names(r))
    assert.matches("cannot reach the registry of docker://127.0.0.1:1/pht/x:latest", r.error, 1, true)
  end)

  it("build into a directory that does not exist fails at check_output", function()
    local dir = helpers.tmpdir()
    local code, _, err = S.pht("build -q --file " .. q("run.sh=/etc/hostname")
      .. " --station " .. q("s1=" .. S.key("station_1") .. ".pub") .. " --creator-id 1 --creator-key x"
      .. " --base " .. q("docker-archive:" .. assert(support.base_image()))
      .. " --output " .. q("docker-archive:" .. dir .. "/no/such/t.tar:pht/x:latest"))
    assert.equal(3, code)
    assert.matches("failed at step check_output: cannot write docker-archive:" .. dir
      .. "/no/such/t.tar:pht/x:latest: " .. dir .. "/no/such does not exist", err, 1, true)
  end)
end)

describe("messages in an operator's words", function()
  it("an encrypted key without a password names the variable and --password-env", function()
    local dir = helpers.tmpdir()
    local code = S.pht("keygen --out " .. q(dir .. "/enc") .. " --password-env PW", { PW = "secret" })
    assert.equal(0, code)
    local _, ref = S.copy_stage(0)
    local err
    code, _, err = S.pht("pre-run -q " .. q(ref) .. " --station station_1 --key " .. q(dir .. "/enc.pem"))
    assert.equal(3, code)
    assert.matches("put its password in $PRIVATE_KEY_PASSWORD, or name the variable holding it with "
      .. "--password-env", err, 1, true)
    code, _, err = S.pht("pre-run -q " .. q(ref) .. " --station station_1 --key " .. q(dir .. "/enc.pem")
      .. " --password-env MY_PW")
    assert.equal(3, code)
    assert.matches("put its password in $MY_PW", err, 1, true)
  end)

  it("a special file among the results is called one, not 'a other'", function()
    local checks = require "pht.checks"
    local ok, err = checks.results_entries({ { path = "fifo", type = "other" } })
    assert.is_nil(ok)
    assert.equal("/opt/pht_results/fifo is a special file (a device, FIFO or socket): results hold only "
      .. "files and directories", err)
    ok, err = checks.results_entries({ { path = "l", type = "hardlink" } })
    assert.matches("is a hard link", err, 1, true)
  end)

  it("a read over its limit says so without naming the Lua API", function()
    local img = assert(pht.open_image("docker-archive:" .. helpers.vectors .. "/" .. S.stages[0]))
    local data, err, code = img:read_file("/opt/train_config.json", 10)
    img:close()
    assert.is_nil(data)
    assert.equal("ELIMIT", code)
    assert.matches("^/opt/train_config.json is %d+ bytes, over the 10%-byte limit of this read$", err)
  end)

  it("post-run --rebase without a base image suggests --base", function()
    local path, ref = S.copy_stage(0)
    assert.equal(0, (S.pht("pre-run -q " .. q(ref) .. " " .. S.station_args(1))))
    -- the archive holds no REPO:base beside the train
    local code, _, err = S.pht("post-run -q --rebase " .. q(ref) .. " " .. S.station_args(1))
    assert.equal(1, code, err)
    assert.matches("failed at step find_base: ", err, 1, true)
    assert.matches("; name the base with --base IMAGE", err, 1, true)
    assert.truthy(path)
  end)
end)
