-- Post-run: what a station does after the train ran (doc/protocol.md §8, with
-- the stricter rules of §9). The station hashes and signs the results,
-- extends the route's signature chain, re-encrypts everything under a fresh
-- key for the route and the creator, and writes a train that holds no
-- plaintext in any layer: the output is built on the layers below the one
-- pre-run marked (or with --rebase on the master the train keeps to, else
-- REPO:base) plus one new layer holding the whole /opt. `protocol` on each step is the section it carries out.
--
-- Context in:  ctx.options.image, .output, .station, .key_path, .password,
--              .tmpdir, .rebase (bool), .base (ref, optional), .masters (refs)
-- Context out: ctx.config (updated), ctx.e_d, ctx.digest, ctx.symkey
local pht = require "pht"
local workflow = require "pht.workflow"
local files = require "pht.files"
local fs = require "pht.fs"
local ref = require "pht.ref"
local route = require "pht.route"
local train = require "pht.train"
local steps = require "pht.steps"

local wf = workflow.new("post-run")
local hex = pht.hex

-- The train and the station ------------------------------------------------------

-- The digest checks of the layers read run beside the next steps; write_image's
-- commit waits for them before it writes anything.
wf:add("open_image", function(ctx) return steps.open_image(ctx, { verify_behind = true }) end,
  { kind = "io", protocol = "§1" })
-- read_config (§2), load_key (§6), find_station (§7.1), check_station_key and
-- check_turn (§9): the station's place on the route.
steps.add_station_steps(wf)

-- The layers the output keeps (those below the one pre-run wrote) are the
-- station's master image and the train's /opt above it; the run's own
-- layers go anyway.
wf:add("check_master", function(ctx)
  if #(ctx.options.masters or {}) == 0 then return workflow.skip(steps.NO_MASTER) end
  local mark = train.pre_run_layer(ctx.image)
  return steps.check_master(ctx, mark and mark - 1 or false)
end, { kind = "verify", protocol = "§9" })

-- What the output is built on, so no plaintext layer survives: with
-- --rebase --base, or the master the train keeps to, or REPO:base; else the
-- layers below the one pre-run marked.
wf:add("find_base", function(ctx)
  if not ctx.options.rebase then
    local mark = train.pre_run_layer(ctx.image)
    if not mark then
      return nil, "no layer of this image was written by libpht pre-run, so the layers holding plaintext "
        .. "cannot be told apart; use --rebase to build on REPO:base"
    end
    ctx.keep_layers = mark - 1
    return true
  end
  local base_ref, err = ctx.options.base, nil
  if not base_ref and ctx.master then base_ref = ctx.master.ref end
  if not base_ref then base_ref, err = ref.base(ctx.options.image, ctx.image) end
  if not base_ref then return nil, err end
  local extra = train.open_extra(ctx.options)
  extra.progress = ctx:count_bytes()
  local base, berr = train.open_image(base_ref, ctx.options.tmpdir, ctx.options.verify_layers, extra)
  if not base then
    return nil, "cannot open the base image for --rebase: " .. tostring(berr)
      .. (ctx.options.base and "" or "; name the base with --base IMAGE")
  end
  ctx:defer(function() base:close() end)
  ctx.base_image, ctx.base_ref = base, base_ref
  return true
end, { kind = "verify", protocol = "§9" })

-- The algorithm must not have changed itself while it ran.
wf:add("check_immutable_files", steps.check_immutable_files, { kind = "verify", protocol = "§9" })

wf:add("read_train", function(ctx)
  return steps.read_tree(ctx, train.TRAIN, ctx.train, "train", ctx.train_entries)
end, { kind = "io", protocol = "§8.5" })

wf:add("verify_immutable_hash", steps.verify_immutable_hash, { kind = "verify", protocol = "§9" })

-- The results as the algorithm left them: only files and directories.
wf:add("check_results_files", steps.list_results, { kind = "verify", protocol = "§9" })

wf:add("read_results", function(ctx)
  if #ctx.results_entries == 0 then return true end
  -- results in a plain tar layer (docker commit's, docker save's) are read in place by encrypt_files
  return steps.read_tree(ctx, train.RESULTS, ctx.results, "results", ctx.results_entries, { in_place = true })
end, { kind = "io", protocol = "§8.1" })

-- A fresh key; every file encrypted on its own with a fresh IV straight into
-- the new layer (on the base chosen above), each read once: the results are
-- fed to e_d in the same pass, which hash_results then finishes. No
-- ciphertext file is written; the entries of /opt follow in write_image.
wf:add("encrypt_files", function(ctx)
  local symkey = pht.new_symkey()
  ctx.symkey = symkey
  ctx:defer(function() symkey:close() end)
  local w, err = steps.writer(ctx, { base = ctx.base_image, keep_layers = ctx.keep_layers,
    tmpdir = ctx.options.tmpdir })
  if not w then return nil, err end
  local progress = steps.bytes_progress(ctx, function()
    return files.plain_bytes(ctx.train) + files.plain_bytes(ctx.results)
  end)
  local ok, werr = w:add_dir(train.OPT, { mode = fs.MODE_DIR })
  if ok then ok, werr = train.write_dirs(w, train.TRAIN, ctx.train_entries) end
  if ok then ok, werr = files.encrypt_into(w, symkey, train.TRAIN, ctx.train, { progress = progress }) end
  if ok then ok, werr = train.write_dirs(w, train.RESULTS, ctx.results_entries) end
  local h = pht.results_hasher(ctx.config:session_id())
  if ok then
    ok, werr = files.encrypt_into(w, symkey, train.RESULTS, ctx.results, { hash = h, progress = progress })
  end
  if not ok then return nil, werr end
  ctx.results_digest = h:digest()
  return true
end, { kind = "crypto", protocol = "§8.5" })

-- e_d over the plaintext results, taken while encrypt_files read them.
wf:add("hash_results", function(ctx)
  local e_d, err = ctx.results_digest, nil
  if not e_d then
    e_d, err = files.results_hash(ctx.config, ctx.results,
      ctx:count_bytes(function() return files.plain_bytes(ctx.results) end))
  end
  if not e_d then return nil, err end
  ctx.e_d = e_d
  return ctx.config:set("result_hash", hex(e_d))
end, { kind = "crypto", protocol = "§8.2" })

wf:add("sign_results", function(ctx)
  local sig, err = ctx.key:sign_digest(ctx.e_d)
  if not sig then return nil, "cannot sign e_d: " .. tostring(err) end
  return ctx.config:set("result_signature", hex(sig))
end, { kind = "crypto", protocol = "§8.3" })

-- This stop's link of the chain.
wf:add("sign_chain_digest", function(ctx)
  local prefix, err = route.chain_prefix(ctx.config, ctx.stops, ctx.pos)
  if not prefix then return nil, err end
  local digest = pht.chain_digest(prefix, ctx.e_d)
  local sig, serr = ctx.key:sign_digest(digest)
  if not sig then return nil, "cannot sign the chain digest: " .. tostring(serr) end
  ctx.digest = digest
  return ctx.config:set_stop_signature(ctx.stop.index, hex(digest), hex(sig))
end, { kind = "crypto", protocol = "§8.4" })

-- The key for every stop and for the creator.
wf:add("wrap_keys", function(ctx)
  local wrapped, err = route.wrap_keys(ctx.config, ctx.stops, ctx.symkey)
  if not wrapped then return nil, err end
  ctx.user_key = wrapped
  return true
end, { kind = "crypto", protocol = "§8.6" })

-- The config post-run is about to write is a valid train config.
wf:add("validate_config", function(ctx)
  return ctx.config:validate()
end, { kind = "verify", protocol = "§2" })

-- One new layer with the whole /opt on the base chosen above: encrypt_files
-- put the trees into it, the config and the wrapped key follow.
wf:add("write_image", function(ctx)
  local w = ctx.writer
  if not w then return nil, "no image writer: encrypt_files did not run" end
  -- the new layer (written by encrypt_files) goes to the destination now
  train.write_progress(ctx, w, files.plain_bytes(ctx.train) + files.plain_bytes(ctx.results),
    ctx.base_image or ctx.image, ctx.keep_layers)
  local ok, werr = w:add_bytes(train.CONFIG, ctx.config:to_json(), { mode = fs.MODE_FILE })
  if ok then ok, werr = w:add_bytes(train.USER_KEY, ctx.user_key, { mode = fs.MODE_FILE }) end
  -- A commit into an OCI layout also removes the blobs nothing references
  -- any more, among them the plaintext layer pre-run wrote; one into a
  -- docker-archive does not keep the archive's other images pre-run marked.
  local dest = train.commit_target(ctx)
  local r = pht.parse_ref(dest)
  if ok and r and r.transport == "docker-archive" then
    ctx.dropped_images = train.archive_plaintext_images(r.path, ctx.options.tmpdir, ctx.image:manifest())
  end
  return train.commit(ctx, w, ok, werr, { history = "libpht post-run", drop_plaintext = true,
    comment = "signed and encrypted by station " .. ctx.stop.station })
end, { kind = "write", writes = true, protocol = "§8.7" })

-- No plaintext stays reachable in an OCI layout: every manifest of it,
-- tagged or not, that holds a pre-run's plaintext (an image copied back
-- from the engine leaves the pre-run image untagged beside it) is removed
-- with the blobs only it used. Other transports: nothing to do.
wf:add("remove_plaintext_images", function(ctx)
  local dir, tag = train.oci_layout(ctx.written or "", ctx.options.image)
  if not dir then
    -- a docker-archive's commit dropped them (drop_plaintext): say which
    for _, f in ipairs(ctx.dropped_images or {}) do
      ctx:log("warn", "removed image %s%s from %s: %s", f.image, f.name and (" (" .. f.name .. ")") or "",
        ctx.written, f.why)
    end
    if ctx.dropped_images and #ctx.dropped_images > 0 then return true end
    return workflow.skip("not an OCI layout")
  end
  local removed, blobs = train.remove_plaintext_images(dir, tag)
  if not removed then return nil, blobs end
  ctx.removed_images = removed
  for _, f in ipairs(removed) do
    ctx:log("warn", "removed image %s from %s: %s", train.describe_image(f), dir, f.why)
  end
  if #removed > 0 then ctx:log("warn", "removed %d blob(s) only those images used", blobs) end
  return true
end, { kind = "write", writes = true, finishes = true, protocol = "§8.7" })

return wf
