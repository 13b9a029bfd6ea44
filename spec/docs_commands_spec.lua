-- Every ```sh block of README.md and doc/station-guide.md runs as typed, in
-- order, as a reader would type them into one shell: exported variables and
-- the working directory carry over from one block to the next.
--
-- What a reader brings is in place: the built `pht` first on PATH, a base
-- image in base.tar (the suite's busybox image), the example station scripts
-- copied from examples/stations/ (as the station guide says), and in the
-- station guide each train that arrives (a docker-archive the guide names that
-- is not there yet is built for station_1 with the station.pub.pem the guide
-- made). A block runs in a scratch directory, or in the repository root when
-- the paragraph above it says "from the repository root".
--
-- A block that calls docker runs only when PHT_TEST_DOCKER_HOST names the
-- suite's daemon; otherwise it is pending, and so is a later block of that
-- document that then fails. It must leave no container and no tag behind. A block is left out
-- only with a visible `<!-- not run: REASON -->` line right above it; the
-- number of such blocks per document is fixed below.
local h = require "helpers"
local q = h.q

-- Absolute paths: the blocks change directory.
local function abs(path) return (h.run("cd " .. q(path) .. " && pwd -P"):gsub("\n$", "")) end
local root, build = abs(h.root), abs(h.build)

local docs = { "README.md", "doc/station-guide.md" }
local not_run_expected = { ["README.md"] = 2, ["doc/station-guide.md"] = 0 }
local trains_arrive = { ["doc/station-guide.md"] = true }

-- The document's blocks: { line, lang, text, root, not_run } in order.
local function parse(path)
  local blocks, para, marker = {}, {}, nil
  local lines = {}
  for l in (h.read(path) .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  local i = 1
  while i <= #lines do
    local l = lines[i]
    local reason = l:match("^%s*<!%-%-%s*not run:%s*(.-)%s*%-%->%s*$")
    local indent, lang = l:match("^(%s*)```(%w*)%s*$")
    if reason then
      assert(reason ~= "", path .. ":" .. i .. ": a not-run marker needs a reason")
      marker = { line = i, reason = reason }
    elseif indent then
      local body, j = {}, i + 1
      while j <= #lines and not lines[j]:match("^%s*```%s*$") do
        body[#body + 1] = lines[j]:sub(#indent + 1)
        j = j + 1
      end
      assert(j <= #lines, path .. ":" .. i .. ": unterminated code block")
      if marker then
        assert(marker.line == i - 1, path .. ":" .. marker.line .. ": a not-run marker must be right above its block")
        assert(lang == "sh", path .. ":" .. marker.line .. ": a not-run marker above a " .. lang .. " block")
      end
      if lang == "sh" then
        local context = table.concat(para, " "):lower()
        blocks[#blocks + 1] = {
          line = i, text = table.concat(body, "\n") .. "\n",
          root = context:find("from the repository root", 1, true) ~= nil,
          not_run = marker and marker.reason,
        }
      end
      marker, para, i = nil, {}, j
    elseif l:match("^%s*$") then
      if #para > 0 then para = { table.concat(para, " ") } end
      para.fresh = true
    else
      assert(not marker, path .. ":" .. (marker and marker.line or i) .. ": a not-run marker must be right above its block")
      if para.fresh then para = {} end
      para[#para + 1] = l
    end
    i = i + 1
  end
  return blocks
end

-- Whether a block runs the docker client (a command word `docker`), names
-- an image in the Docker engine, or runs a train there (`pht run`).
local function needs_daemon(text)
  for l in text:gmatch("[^\n]+") do
    l = l:gsub("#.*$", "")
    if l:match("^%s*docker%s") or l:match("[;&|]%s*docker%s") or l:find("docker-daemon:", 1, true)
      or l:match("%f[%w]pht%s+run%s") then -- pht run runs the train in the engine
      return true
    end
  end
  return false
end

local function lines_of(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[l] = true end
  return t
end

-- Containers and tags in the suite's daemon, as sets.
local function daemon_state(host)
  local env = "DOCKER_HOST=" .. q(host) .. " "
  return lines_of(h.stdout(env .. "docker ps -aq --no-trunc")),
    lines_of(h.stdout(env .. "docker images --format '{{.Repository}}:{{.Tag}}'"))
end

local function new_items(before, after)
  local list = {}
  for k in pairs(after) do if not before[k] then list[#list + 1] = k end end
  table.sort(list)
  return list
end

for _, doc in ipairs(docs) do
  describe(doc, function()
    local blocks = parse(root .. "/" .. doc)
    local scratch, work, blocked

    setup(function()
      scratch = abs(h.tmpdir())
      work = scratch .. "/work"
      h.run("mkdir -p " .. q(work) .. " " .. q(scratch .. "/tmp"))
      local support = require "support"
      local base = assert(support.base_image())
      h.run("cp " .. q(base) .. " " .. q(work .. "/base.tar"))
      h.run("cp " .. q(root) .. "/examples/stations/*.lua " .. q(work))
      h.write(scratch .. "/cwd", work .. "\n")
      h.write(scratch .. "/env", "")
    end)

    -- A train for station_1 with the station's public key, written to
    -- work/NAME, as the central service would send it.
    local function arrive(name)
      local pub = work .. "/station.pub.pem"
      assert(io.open(pub), doc .. " has made no station.pub.pem before its first train arrives")
      local central = scratch .. "/central"
      h.run("mkdir -p " .. q(central .. "/algo"))
      h.write(central .. "/algo/entrypoint.sh", "mkdir -p /opt/pht_results && echo ran > /opt/pht_results/out.txt\n")
      local pht = q(build .. "/bin/pht")
      if not io.open(central .. "/creator.pem") then h.run(pht .. " keygen --out " .. q(central .. "/creator")) end
      h.run(pht .. " build -q --files " .. q(central .. "/algo") .. " --station " .. q("station_1=" .. pub)
        .. " --creator-id 1 --creator-key " .. q(central .. "/creator.pem")
        .. " --base " .. q("docker-archive:" .. work .. "/base.tar")
        .. " --output " .. q("docker-archive:" .. work .. "/" .. name .. ":pht/train:latest"))
    end

    local n_not_run = 0
    for k, b in ipairs(blocks) do
      if b.not_run then
        n_not_run = n_not_run + 1
      else
        it("block " .. k .. " (line " .. b.line .. ") runs as typed", function()
          local host = os.getenv("PHT_TEST_DOCKER_HOST")
          if host == "" then host = nil end
          local daemon = needs_daemon(b.text)
          if daemon and not host then
            blocked = "an earlier block of " .. doc .. " needs a Docker daemon"
            return pending("needs a Docker daemon: PHT_TEST_DOCKER_HOST is not set (run it through tools/test.sh)")
          end
          if trains_arrive[doc] then
            for name in b.text:gmatch("docker%-archive:([%w_.-]+%.tar)") do
              if not io.open(work .. "/" .. name) then arrive(name) end
            end
          end
          local script = scratch .. "/block-" .. k .. ".sh"
          h.write(script, table.concat({
            "cd " .. (b.root and q(root) or "\"$(cat " .. q(scratch .. "/cwd") .. ")\""),
            ". " .. q(scratch .. "/env"),
            "export PATH=" .. q(build .. "/bin") .. ":$PATH TMPDIR=" .. q(scratch .. "/tmp"),
            host and ("export DOCKER_HOST=" .. q(host)) or "",
            "set -e -o pipefail",
            b.text,
            "set +e",
            "export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_|PATH|TMPDIR)(=|$)' >" .. q(scratch .. "/env"),
            b.root and "" or ("pwd >" .. q(scratch .. "/cwd")),
          }, "\n") .. "\n")
          local containers, tags
          if daemon then containers, tags = daemon_state(host) end
          local ok, out = h.sh("bash " .. q(script) .. " </dev/null")
          local left = {}
          if daemon then
            local c2, t2 = daemon_state(host)
            local lc, lt = new_items(containers, c2), new_items(tags, t2)
            local env = "DOCKER_HOST=" .. q(host) .. " docker "
            if #lc > 0 then h.sh(env .. "rm -f " .. table.concat(lc, " ")) end
            for _, t in ipairs(lt) do h.sh(env .. "rmi " .. q(t)) end
            for _, c in ipairs(lc) do left[#left + 1] = "container " .. c end
            for _, t in ipairs(lt) do left[#left + 1] = "image " .. t end
          end
          if not ok and blocked then
            return pending(blocked .. ", and this one fails without it: " .. (out:match("([^\n]+)\n?$") or ""))
          end
          assert(ok, doc .. ":" .. b.line .. " failed:\n" .. b.text .. "--- its output:\n" .. out)
          assert.are.same({}, left, doc .. ":" .. b.line .. " leaves things in the Docker engine")
        end)
      end
    end

    it("leaves exactly " .. not_run_expected[doc] .. " sh blocks not run, each marked with its reason", function()
      assert.is_true(#blocks > 0, "no sh block found in " .. doc)
      assert.are.equal(not_run_expected[doc], n_not_run)
    end)
  end)
end
