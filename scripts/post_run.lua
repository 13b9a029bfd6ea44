-- Post-run: what a station does after the train ran (doc/protocol.md §8, with
-- the stricter rules of §9). The station hashes and signs the results,
-- extends the route's signature chain, re-encrypts everything under a fresh
-- key for the route and the creator, and writes a train that holds no
-- plaintext in any layer: the output is built on the layers below the one
-- pre-run marked (or on REPO:base with --rebase) plus one new layer holding
-- the whole /opt. `protocol` on each step is the section it carries out.
--
-- Context in:  ctx.options.image, .output, .station, .key_path, .password,
--              .tmpdir, .rebase (bool), .base (ref, optional)
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

wf:add("open_image", steps.open_image, { kind = "io", protocol = "§1" })
-- read_config (§2), load_key (§6), find_station (§7.1), check_station_key and
-- check_turn (§9): the station's place on the route.
steps.add_station_steps(wf)

-- What the output is built on, so no plaintext layer survives: REPO:base
-- (or --base) with --rebase, else the layers below the one pre-run marked.
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
  if not base_ref then base_ref, err = ref.base(ctx.options.image, ctx.image) end
  if not base_ref then return nil, err end
  local base, berr = train.open_image(base_ref, ctx.options.tmpdir, ctx.options.verify_layers,
    train.open_extra(ctx.options))
  if not base then return nil, "cannot open the base image for --rebase: " .. tostring(berr) end
  ctx:defer(function() base:close() end)
  ctx.base_image, ctx.base_ref = base, base_ref
  return true
end, { kind = "verify", protocol = "§9" })

-- The algorithm must not have changed itself while it ran.
wf:add("check_immutable_files", steps.check_immutable_files, { kind = "verify", protocol = "§9" })

wf:add("read_train", function(ctx)
  return steps.read_tree(ctx, train.TRAIN, ctx.train, "train")
end, { kind = "io", protocol = "§8.5" })

wf:add("verify_immutable_hash", steps.verify_immutable_hash, { kind = "verify", protocol = "§9" })

-- The results as the algorithm left them: only files and directories.
wf:add("check_results_files", steps.list_results, { kind = "verify", protocol = "§9" })

wf:add("read_results", function(ctx)
  if #ctx.results_entries == 0 then return true end
  return steps.read_tree(ctx, train.RESULTS, ctx.results, "results")
end, { kind = "io", protocol = "§8.1" })

wf:add("hash_results", function(ctx)
  local e_d, err = files.results_hash(ctx.config, ctx.results)
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

-- A fresh key; every file encrypted on its own with a fresh IV.
wf:add("encrypt_files", function(ctx)
  local symkey = pht.new_symkey()
  ctx.symkey = symkey
  ctx:defer(function() symkey:close() end)
  local tmp = ctx:tempdir()
  local ok, err = files.encrypt_all(symkey, ctx.train, tmp, "train")
  if ok then ok, err = files.encrypt_all(symkey, ctx.results, tmp, "results") end
  return ok, err
end, { kind = "crypto", protocol = "§8.5" })

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

-- One new layer with the whole /opt on the base chosen above.
wf:add("write_image", function(ctx)
  local w, err = ctx.image:writer({ base = ctx.base_image, keep_layers = ctx.keep_layers,
    tmpdir = ctx.options.tmpdir })
  if not w then return nil, "cannot start writing the image: " .. tostring(err) end
  local ok, werr = train.write_opt(w, ctx.config:to_json())
  if ok then ok, werr = train.write_tree(w, train.TRAIN, ctx.train_entries, files.write_from(ctx.train, "cipher")) end
  if ok then
    ok, werr = train.write_tree(w, train.RESULTS, ctx.results_entries, files.write_from(ctx.results, "cipher"))
  end
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
