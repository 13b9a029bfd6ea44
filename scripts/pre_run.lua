-- Pre-run: what a station does before the train runs (doc/protocol.md §7, with
-- the stricter checks of §9 as steps of their own). Each step is named for
-- what it checks; the name is what an operator sees when the train is
-- rejected, and `protocol` is the section of doc/protocol.md it carries out. A
-- station changes this list by name in its own script (see doc/workflow.md)
-- rather than by copying this file. The checks themselves are in
-- lua/pht/checks.lua.
--
-- Context in:  ctx.options.image (ref), .output (ref, default: in place),
--              .station, .key_path, .password, .tmpdir, .masters (refs)
-- Context out: ctx.master (the master matched), ctx.config, ctx.stop, ctx.symkey, ctx.e_h, ctx.e_d,
--              ctx.train and ctx.results (pht.files records in hashing order)
local pht = require "pht"
local workflow = require "pht.workflow"
local checks = require "pht.checks"
local field = require "pht.field"
local train = require "pht.train"
local steps = require "pht.steps"

local wf = workflow.new("pre-run")

-- §7.5: only when an earlier stop has signed (result_hash is not null).
local function after_first_stop(reason, fn)
  return function(ctx, step)
    if ctx.pos == 1 then return workflow.skip(reason) end
    return fn(ctx, step)
  end
end
local NO_RESULTS = "first stop: no results yet"

-- The train and the station ------------------------------------------------------

-- The digest checks of the layers read run beside the next steps; write_image's
-- commit waits for them before it writes anything.
wf:add("open_image", function(ctx) return steps.open_image(ctx, { verify_behind = true }) end,
  { kind = "io", protocol = "§1" })
wf:add("check_not_decrypted", steps.check_not_decrypted, { kind = "verify", protocol = "§9" })
-- The runtime the train will run on is the station's trusted master image:
-- nothing outside the train's /opt paths changed above it. Before any key
-- is used, so a refused train is never decrypted.
wf:add("check_master", function(ctx)
  if #(ctx.options.masters or {}) == 0 then return workflow.skip(steps.NO_MASTER) end
  return steps.check_master(ctx)
end, { kind = "verify", protocol = "§9" })
-- read_config (§2), load_key (§6), find_station (§7.1), check_station_key and
-- check_turn (§9): the station's place on the route.
steps.add_station_steps(wf)

wf:add("unwrap_key", function(ctx)
  local wrapped, err = field.unhex(ctx.stop.encrypted_key, "the encrypted key of station " .. ctx.stop.station)
  if not wrapped then return nil, err end
  return steps.unwrap(ctx, wrapped, "cannot unwrap the symmetric key with the station's key")
end, { kind = "verify", protocol = "§7.2" })

-- The immutable files -----------------------------------------------------------

wf:add("check_immutable_files", steps.check_immutable_files, { kind = "verify", protocol = "§9" })

-- The immutable files are decrypted in one pass straight into the new layer
-- write_image commits, e_h taken on the way; no plaintext file is written.
-- The layers on top that hold nothing but the train's paths (the stations'
-- sealed layers, and the train's own when it adds nothing else) are left
-- out: the new layer restates those paths whole (train.restate), so they
-- would only lie below it unseen, and a docker-archive would copy them
-- (the results of every stop so far) into the output. Post-run builds on
-- what is left below the new layer.
local function writer_opts(ctx)
  if ctx.keep_layers == nil then
    local top = ctx.image:protocol_top()
    ctx.keep_layers = top < #ctx.image:layers() and top or false
  end
  return { tmpdir = ctx.options.tmpdir, keep_layers = ctx.keep_layers or nil }
end

wf:add("decrypt_train", function(ctx)
  if not ctx.writer then
    local w, err = steps.writer(ctx, writer_opts(ctx))
    if not w then return nil, err end
    if ctx.keep_layers then
      local ok, werr = train.restate_opt(w, ctx.image)
      if not ok then return nil, werr end
    end
  end
  local digest, err = steps.decrypt_into_layer(ctx, train.TRAIN, ctx.train_entries, ctx.train, "train",
    pht.immutable_hasher(ctx.config:creator_id(), ctx.config:session_id()), writer_opts(ctx))
  if not digest then return nil, err end
  ctx.train_digest = digest
  return true
end, { kind = "verify", protocol = "§7.3" })

wf:add("verify_immutable_hash", steps.verify_immutable_hash, { kind = "verify", protocol = "§7.4" })
wf:add("verify_creator_signature", steps.verify_creator_signature, { kind = "verify", protocol = "§7.4" })
wf:add("verify_build_signature", steps.verify_build_signature, { kind = "verify", protocol = "§7.4" })

-- The results of the stations before ----------------------------------------------

wf:add("verify_previous_signatures", after_first_stop("first stop: no earlier station signed", function(ctx)
  return checks.previous_signatures(ctx.stops, ctx.pos)
end), { kind = "verify", protocol = "§7.5a" })

wf:add("check_results_files", function(ctx)
  local ok, err = steps.list_results(ctx)
  if ok and ctx.pos == 1 then ok, err = checks.no_unsigned_results(ctx.results) end
  return ok, err
end, { kind = "verify", protocol = "§9" })

wf:add("decrypt_results", after_first_stop(NO_RESULTS, function(ctx)
  local digest, err = steps.decrypt_into_layer(ctx, train.RESULTS, ctx.results_entries, ctx.results, "results",
    pht.results_hasher(ctx.config:session_id()), writer_opts(ctx))
  if not digest then return nil, err end
  ctx.results_digest = digest
  return true
end), { kind = "verify", protocol = "§7.5b" })

wf:add("verify_result_hash", after_first_stop(NO_RESULTS, steps.verify_result_hash),
  { kind = "verify", protocol = "§7.5c" })

wf:add("verify_result_signature", after_first_stop(NO_RESULTS, function(ctx)
  return checks.result_signature(ctx.config, ctx.stops[ctx.pos - 1], ctx.e_d, "the stop before")
end), { kind = "verify", protocol = "§7.5d" })

-- The previous stop's digest is the chain over the verified results.
wf:add("verify_chain_digests", after_first_stop("first stop: no chain yet", function(ctx)
  return checks.stop_chain_digest(ctx.config, ctx.stops, ctx.pos - 1, ctx.e_d)
end), { kind = "verify", protocol = "§9" })

-- The plaintext goes into a new, marked layer; the image must not leave the
-- station now. Post-run drops this layer and everything above it.
-- decrypt_train and decrypt_results have put the plaintext into it already.
-- The plaintext carries mtime 0, as the reference writes it. A train that
-- rewrites a result then always changes its mtime, so a daemon whose layer
-- diff compares size and mtime in seconds (the vfs driver) cannot miss a
-- rewrite of the same size within the same second.
wf:add("write_image", function(ctx)
  local w, err = steps.writer(ctx, writer_opts(ctx))
  if not w then return nil, err end
  if ctx.keep_layers then
    local ok, rerr = train.restate(w, ctx.image, { results = ctx.results_digest == nil and ctx.results_entries })
    if not ok then return nil, rerr end
  end
  train.write_progress(ctx, w, 0, ctx.image, ctx.keep_layers or nil)
  return train.commit(ctx, w, true, nil, { history = train.PRE_RUN_MARK,
    comment = "decrypted for station " .. ctx.stop.station .. ": plaintext, never push this image" })
end, { kind = "write", writes = true, protocol = "§7.6" })

return wf
