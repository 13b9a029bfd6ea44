-- Run: a station's whole round with a train in its Docker engine, the
-- reference's `full` step and what stations otherwise script by hand. Pre-run
-- decrypts the train into an image of the run's own, the train runs in a
-- container of that image under the station's limits (no network unless
-- asked), the container is committed, and post-run (with --rebase unless told
-- otherwise) seals the results into the output. The containers and the
-- plaintext images the run made are removed at the end, whether it
-- succeeded or not; the input is written only by the last step, so a train
-- that fails leaves it as it was. Each step is named for what it does; a
-- station changes this list by name (doc/workflow.md), and its --script
-- files change the pre-run and post-run inside as well.
--
-- Context in:  ctx.options as for pre-run and post-run (image, output,
--              station, key_path, password, tmpdir, registry,
--              docker_timeout, base), .rebase (default true), and the run's:
--              .network, .cpus, .memory, .volumes, .mounts, .env (see
--              pht.container), .stdout, .stderr (file handles for the
--              train's output; default io.stdout, io.stderr).
--              ctx.load_workflow(name): a stock workflow with the station's
--              scripts applied (the `pht` command supplies it).
-- Context out: ctx.pre, ctx.post (the contexts of the inner workflows),
--              ctx.exit_status, ctx.inner_failure (when pre-run or post-run
--              failed), ctx.leftovers (what could not be removed).
local pht = require "pht"
local workflow = require "pht.workflow"
local container = require "pht.container"
local ref = require "pht.ref"
local train = require "pht.train"

local wf = workflow.new("run")
local fmt = string.format

-- The stock workflow `name`, from the front end: scripts do not load each other.
local function load_workflow(ctx, name)
  if not ctx.load_workflow then
    return nil, "the run workflow needs ctx.load_workflow (e.g. pht.stock.load), as the pht command gives it"
  end
  return ctx.load_workflow(name)
end

-- Run stock workflow `name` over options o, its progress shown as part of this one.
local function run_inner(ctx, name, o)
  local inner, err = load_workflow(ctx, name)
  if not inner then return nil, "cannot load the stock workflow " .. name .. ": " .. tostring(err) end
  local ictx = workflow.context({ options = o, logger = ctx.logger, program = ctx.program })
  if ctx.progress then
    ictx.progress = function(_, i, n, step) ctx:log("info", "%s [%d/%d] %s", inner.name, i, n, step.name) end
  end
  local ok, failure = inner:run(ictx)
  if not ok then
    ctx.inner_failure = failure
    return nil, tostring(failure), failure.code
  end
  return ictx
end

-- A copy of the run's options for an inner workflow, with `changes`.
local function inner_options(ctx, changes)
  local o = {}
  for k, v in pairs(ctx.options) do o[k] = v end
  for k, v in pairs(changes) do o[k] = v end
  return o
end

-- Remove what the run made; what stays is named in ctx.leftovers.
local function leftover(ctx, what, ok, err, code)
  if ok or code == "ENOTFOUND" then return end
  ctx.leftovers = ctx.leftovers or {}
  ctx.leftovers[#ctx.leftovers + 1] = fmt("%s: %s", what, tostring(err))
  ctx:log("warn", "cannot remove %s: %s", what, tostring(err))
end

-- The engine --------------------------------------------------------------------------

wf:add("connect_engine", function(ctx)
  local d, err = pht.open_docker(ctx.options.docker_host, ctx.options.docker_timeout)
  if not d then return nil, err end
  local ok, perr = d:ping()
  if not ok then d:close() return nil, "the Docker engine does not answer: " .. tostring(perr) end
  ctx.docker = d
  ctx:defer(function() d:close() end)
  ctx.run_name, ctx.owner = container.run_name(), pht.owner()
  ctx:log("debug", "the run's container and images are named %s", ctx.run_name)
  return true
end, { kind = "io", protocol = "§1" })

-- What an earlier run on this machine left when it was killed (its process
-- is gone): its container and plaintext images, found by their owner label.
wf:add("remove_leftovers", function(ctx)
  local d = ctx.docker
  for _, list in ipairs({ d:containers_labelled(container.OWNER_LABEL) or {},
    d:images_labelled(container.OWNER_LABEL) or {} }) do
    for _, item in ipairs(list) do
      if item.value and pht.owner_gone(item.value) then
        local ok, err, code
        if item.name then ok, err, code = d:remove(item.id) else ok, err, code = d:remove_image(item.id, true) end
        if ok then
          ctx:log("warn", "removed the %s %s a killed pht run left", item.name and "container" or "plaintext image",
            item.name or item.id)
        elseif code ~= "ENOTFOUND" then
          ctx:log("warn", "cannot remove what a killed pht run left (%s): %s", item.name or item.id, tostring(err))
        end
      end
    end
  end
  return true
end, { kind = "io", protocol = "§1" })

-- The run's options are checked before anything is decrypted. An archive
-- without NAME:TAG is named by the archive's own names: post-run writes
-- from the engine, which knows nothing of them.
wf:add("check_run_options", function(ctx)
  local o = ctx.options
  local cfg, err = container.create_config("-", o)
  if not cfg then return nil, err end
  local target = o.output or o.image
  local img
  if ref.unnamed_archive(target) or (o.rebase ~= false and not o.base and ref.unnamed_archive(o.image)) then
    img, err = train.open_image(o.image, o.tmpdir, false, train.open_extra(o))
    if not img then return nil, err end
    ctx:defer(function() img:close() end)
  end
  if ref.unnamed_archive(target) then
    local name = img and ref.repo_tags(img)[1]
    if not name then return nil, "cannot tell the train's name in " .. target .. "; give --output ...:NAME:TAG" end
    local named, nerr = pht.ref_with_tag(target, name, name:match(":([^:/]+)$") or "latest")
    if not named then return nil, nerr end
    ctx.output_ref = named
  end
  -- with masters, post-run rebases onto the one the train was built on (its check_master)
  if o.rebase ~= false and not o.base and #(o.masters or {}) == 0 then
    local base, berr = ref.base(o.image, img)
    if not base then return nil, berr end
    ctx.base_ref = base
  end
  return true
end, { kind = "policy", protocol = "§9" })

-- Pre-run, into an image of this run: the input is not written.
wf:add("pre_run", function(ctx)
  local name = ctx.run_name .. ":pre-run"
  -- from here on the image may exist, whatever pre-run's outcome
  ctx:defer(function(c) leftover(c, "the plaintext image " .. name, c.docker:remove_image(name, true)) end)
  -- the image carries the run's labels, so a later run can remove it if this one is killed
  local pre, err, code = run_inner(ctx, "pre_run", inner_options(ctx, { output = "docker-daemon:" .. name,
    runtime_config = { labels = { [container.LABEL] = ctx.run_name, [container.OWNER_LABEL] = ctx.owner } } }))
  if not pre then return nil, err, code end
  ctx.pre, ctx.pre_image = pre, name
  return true
end, { kind = "verify", protocol = "§7" })

-- What runs is the image's own command, as the reference runs it.
wf:add("read_command", function(ctx)
  local text, err = ctx.docker:inspect_image(ctx.pre_image)
  if not text then return nil, err end
  local cfg = pht.json_decode(text)
  local argv, cerr = container.command(cfg)
  if not argv then return nil, cerr end
  ctx.image_id, ctx.command = cfg.Id, argv
  ctx:log("debug", "the plaintext image %s is %s", ctx.pre_image, tostring(cfg.Id))
  ctx:log("debug", "the train runs %s", table.concat(argv, " "))
  return true
end, { kind = "verify", protocol = "§1" })

-- A station wraps this step to change ctx.container_config before the create.
wf:add("create_container", function(ctx)
  local o = inner_options(ctx, { label = ctx.run_name, owner = ctx.owner })
  local cfg, err = container.create_config(ctx.image_id, o)
  if not cfg then return nil, err end
  ctx.container_config = cfg
  local json = assert(pht.json_encode(cfg))
  local id, cerr = ctx.docker:create(ctx.run_name, json)
  if not id then return nil, cerr end
  ctx.container = id
  ctx:defer(function(c) leftover(c, "the train's container " .. c.run_name, c.docker:remove(id)) end)
  return true
end, { kind = "io", protocol = "§1" })

-- The train runs; its stdout and stderr go to the station as they come.
wf:add("run_train", function(ctx)
  local ok, err = ctx.docker:start(ctx.container)
  if not ok then return nil, err end
  ok, err = ctx.docker:logs(ctx.container, ctx.options.stdout or io.stdout, ctx.options.stderr or io.stderr, true)
  if not ok then return nil, "cannot read the train's output: " .. tostring(err) end
  local status, werr = ctx.docker:wait(ctx.container)
  if not status then return nil, werr end
  ctx.exit_status = status
  if status ~= 0 then
    return nil, fmt("the train exited with status %d%s; the input train is unchanged",
      status, status == 137 and " (killed: out of memory, or stopped)" or ""), "ETRAIN"
  end
  return true
end, { kind = "io", protocol = "§1" })

wf:add("commit_container", function(ctx)
  local name = ctx.run_name .. ":ran"
  local id, err = ctx.docker:commit(ctx.container, ctx.run_name, "ran")
  if not id then return nil, err end
  ctx:defer(function(c) leftover(c, "the plaintext image " .. name, c.docker:remove_image(name, true)) end)
  ctx.ran_image = name
  ctx:log("debug", "the plaintext image %s is %s", name, id)
  return true
end, { kind = "io", protocol = "§1" })

-- The committed image's runtime config is the container's: the station's
-- variables and the run's label. The output gets the train's own back.
wf:add("restore_train_config", function(ctx)
  local before, err = ctx.docker:inspect_image(ctx.pre_image)
  local after, aerr = ctx.docker:inspect_image(ctx.ran_image)
  if not before or not after then return nil, err or aerr end
  ctx.runtime_config = container.config_changes(pht.json_decode(before), pht.json_decode(after))
  return true
end, { kind = "verify", protocol = "§1" })

-- Post-run seals the results into the output (over the input unless
-- options.output), on REPO:base of the input with rebase.
wf:add("post_run", function(ctx)
  local o = inner_options(ctx, {
    image = "docker-daemon:" .. ctx.ran_image,
    output = ctx.output_ref or ctx.options.output or ctx.options.image,
    rebase = ctx.options.rebase ~= false,
    base = ctx.options.base or ctx.base_ref,
    runtime_config = ctx.runtime_config,
  })
  if not o.rebase then o.base = nil end
  local post, err, code = run_inner(ctx, "post_run", o)
  if not post then return nil, err, code end
  ctx.post, ctx.written = post, post.written
  return true
end, { kind = "write", writes = true, protocol = "§8" })

return wf
