-- `pht inspect`: what can be learnt about a train without any private key.
-- image(ref) returns a report table (also printed as JSON by --json);
-- text(report) renders it for people.
local pht = require "pht"
local checks = require "pht.checks"
local field = require "pht.field"
local route = require "pht.route"
local train = require "pht.train"

local M = {}

local function check(report, name, ok, message)
  report.checks[#report.checks + 1] = { name = name, ok = ok and true or false, message = message }
  if not ok then report.ok = false end
end

local function fingerprint(hex)
  local key = hex and pht.load_public_key_hex(hex)
  return key and key:fingerprint() or nil
end

-- The signature checks of pht.checks that need no private key, over the
-- digests the config carries. Returns the position of the last stop that
-- signed, or nil.
local function verify_sigs(report, cfg, stops)
  local e_h = field.unhex(cfg:get("hash"), "hash")
  check(report, "creator_signature", e_h and checks.creator_signature(cfg, e_h),
    "the creator's signature over e_h (the config's hash)")
  check(report, "build_signature", e_h and checks.build_signature(cfg, e_h),
    "the builder's signature over e_h and the creator's signature")

  for pos, s in ipairs(stops) do
    local r = report.route[pos]
    if s.signature then
      r.signature_valid = checks.stop_signature(s) and true or false
      check(report, "chain_signature:" .. tostring(s.station), r.signature_valid,
        tostring(s.station) .. "'s chain signature")
    end
  end
  local s, last = route.last_signed(stops)
  local rh = cfg:get("result_hash")
  if last then
    for pos = 1, last - 1 do
      if not stops[pos].signature then
        check(report, "signatures_complete", false, "station " .. tostring(stops[pos].station)
          .. " has no signature although a later stop signed")
      end
    end
    local e_d = field.unhex(rh, "result_hash")
    check(report, "result_signature", e_d and checks.result_signature(cfg, s, e_d, "the last to sign"),
      "result_signature by " .. tostring(s.station) .. ", the last to sign")
    check(report, "chain_digest", e_d and checks.stop_chain_digest(cfg, stops, last, e_d),
      tostring(s.station) .. "'s chain digest is SHA-512(earlier digests || result_hash)")
  else
    check(report, "no_results_yet", rh == nil, "result_hash is null before any stop signed")
  end
  return last
end

-- The master check of the report: {checked = true, ok, matched (the
-- reference), message}. A master that cannot be opened fails the check.
-- With a pre-run layer, only the layers below it count, as for post-run.
local function master_report(img, refs, tmpdir, extra)
  local list, r = {}, { checked = true, ok = false }
  for _, m in ipairs(refs) do
    local mi, err = train.open_master(m, tmpdir, extra)
    if not mi then
      r.message = err
      break
    end
    list[#list + 1] = { ref = m, image = mi }
  end
  if not r.message then
    local mark = train.pre_run_layer(img)
    local m, err = checks.master(img, list, mark and mark - 1 or nil)
    if m then
      r.ok, r.matched = true, m.ref
      r.message = string.format("built on master %s; nothing outside the train's /opt paths changed above it",
        m.ref)
    else
      r.message = err
    end
  end
  for _, m in ipairs(list) do m.image:close() end
  return r
end

-- The other images where the train is stored that hold a pre-run's
-- plaintext: in an OCI layout every manifest of index.json, tagged or not
-- (pht.oci_plaintext); in a docker-archive every image of the archive (a
-- layer marked by pre-run). A list of { digest or image =, name =, why = }
-- without the inspected image itself, or nil and a message.
local function plaintext_elsewhere(ref, tmpdir)
  local dir, tag = train.oci_layout(ref)
  if dir then
    local found, err = train.plaintext_images(dir, tag)
    if not found then return nil, err end
    local others = {}
    for _, f in ipairs(found) do
      if not (tag and f.name == tag) then others[#others + 1] = f end
    end
    return others
  end
  local r = pht.parse_ref(ref)
  if not r or r.transport ~= "docker-archive" then return {} end
  local self_img = train.open_image(ref, tmpdir, false)
  local self_id = self_img and self_img:manifest()
  if self_img then self_img:close() end
  return train.archive_plaintext_images(r.path, tmpdir, self_id)
end

-- extra: more pht.open_image options (train.open_image), or nil; its
-- progress function also counts the reads of /opt after the open. masters
-- (optional): the references of the master images the station trusts
-- (pht.checks.master); the report's master says which one the train keeps
-- to, or why none.
function M.image(ref, tmpdir, verify_layers, extra, masters)
  local img, err = train.open_image(ref, tmpdir, verify_layers, extra)
  if not img then return nil, err end
  -- a docker-daemon image lands /opt on the first read below
  if extra and extra.progress then img:set_progress(extra.progress) end
  local cfg, cerr = train.read_config(img)
  if not cfg then img:close() return nil, cerr end
  local report = { image = ref, ok = true, checks = {}, route = {} }
  local layers = img:layers()
  report.layers = #layers
  report.layers_verified = 0
  for _, l in ipairs(layers) do
    if l.verified then report.layers_verified = report.layers_verified + 1 end
  end
  report.plaintext = train.pre_run_layer(img) ~= nil
  local creator = cfg:get("creator") or {}
  report.train = {
    id = cfg:get("@id"), proposal_id = cfg:get("proposal_id"),
    creator = { id = cfg:creator_id(), fingerprint = fingerprint(creator.rsa_public_key),
      key_wrapped = creator.encrypted_key ~= nil },
    files = cfg:file_list(), hash = cfg:get("hash"), result_hash = cfg:get("result_hash"),
  }
  local stops = cfg:route()
  for pos, s in ipairs(stops) do
    report.route[pos] = { index = s.index, station = tostring(s.station), eco_system = s.eco_system,
      fingerprint = fingerprint(s.rsa_public_key), key_wrapped = s.encrypted_key ~= nil,
      signed = s.signature ~= nil }
  end
  local entries = train.list(img, train.TRAIN)
  report.train.query = false
  if entries then
    for _, e in ipairs(entries) do if e.path == train.QUERY then report.train.query = true end end
    local ok, why = checks.immutable_files(cfg, entries)
    check(report, "immutable_files", ok, ok and "/opt/pht_train holds exactly file_list and query.json" or why)
  end
  verify_sigs(report, cfg, stops)
  local nxt = route.next_stop(stops)
  if nxt then
    report.next = { station = tostring(nxt.station), index = nxt.index }
  else
    report.complete = true
  end
  -- The protocol's hashes cover /opt only; with no trusted master to compare
  -- against, say so rather than let "ok" suggest the runtime was checked.
  if masters and #masters > 0 then
    report.master = master_report(img, masters, tmpdir, extra)
    check(report, "master", report.master.ok, report.master.message)
  else
    report.master = { checked = false,
      message = "changes outside /opt were not checked (no master image given)" }
  end
  if report.plaintext then
    check(report, "no_plaintext", false, "the image holds a layer decrypted by pre-run: it must not leave the station")
  end
  local others, perr = plaintext_elsewhere(ref, tmpdir)
  if not others then
    check(report, "no_plaintext_beside", false, perr)
  else
    report.plaintext_beside = others
    local names = {}
    for _, f in ipairs(others) do
      names[#names + 1] = (f.digest and train.describe_image(f) or (f.image .. (f.name and (" " .. f.name) or "")))
        .. ": " .. f.why
    end
    check(report, "no_plaintext_beside", #others == 0, #others == 0
      and "no other image beside this one holds plaintext"
      or (#others .. " other image(s) beside this one hold plaintext: " .. table.concat(names, "; ")))
  end
  img:close()
  return report
end

function M.text(r)
  local out = {}
  local function add(...) out[#out + 1] = string.format(...) end
  add("train %s in %s (%d layers, %d digest-checked)", tostring(r.train.id), r.image, r.layers,
    r.layers_verified)
  add("creator: %s (key %s)", tostring(r.train.creator.id), (r.train.creator.fingerprint or "?"):sub(1, 16))
  add("files: %s%s", table.concat(r.train.files, ", "), r.train.query and " + query.json" or "")
  add("route:")
  for _, s in ipairs(r.route) do
    local state = s.signed and (s.signature_valid and "signed" or "signed, DOES NOT VERIFY")
      or (r.next and r.next.index == s.index and "next" or "-")
    add("  %d  %-20s %-6s key %s  %s", s.index, s.station, tostring(s.eco_system),
      (s.fingerprint or "?"):sub(1, 16), state)
  end
  if r.complete then
    add("route complete: the creator can decrypt the results (pht decrypt-results)")
  elseif r.next then
    add("next stop: %s (index %d)", r.next.station, r.next.index)
  end
  if r.master then add("master: %s", r.master.message) end
  add("checks:")
  for _, c in ipairs(r.checks) do add("  %-4s %s", c.ok and "ok" or "FAIL", c.message) end
  return table.concat(out, "\n") .. "\n"
end

return M
