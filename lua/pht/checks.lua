-- Every check of the protocol, in one place: what pre-run (doc/protocol.md §7)
-- and decrypt-results verify, and what libpht adds (§9). pre-run, post-run
-- and decrypt-results call them through their steps (pht.steps), `pht
-- inspect` calls them without any private key (pht.inspect), the gateway
-- gets both through pht.verify and pht.inspect.
--
-- Each takes plain values (a pht.config, the sorted stops, file records,
-- digests), never a workflow context, and returns true (or the value it
-- established), or nil and the message an operator sees: what is wrong and
-- where.
local pht = require "pht"
local field = require "pht.field"
local files = require "pht.files"
local route = require "pht.route"
local train = require "pht.train"

local M = {}

local fmt = string.format

-- An entry type (image:stat's names) in words.
local TYPE_WORDS = { symlink = "symbolic link", hardlink = "hard link",
  other = "special file (a device, FIFO or socket)", dir = "directory", file = "regular file" }
local function type_words(t) return TYPE_WORDS[t] or tostring(t) end
local short = field.short

-- Keys and the route ---------------------------------------------------------------

-- The private key is the one whose public key is in hex field `what` (else
-- unwrapping would fail with an OAEP error that does not say why). `owner`
-- completes "the private key is not ...".
function M.private_key_is(key, hex, what, owner)
  local pub, err = field.public_key(hex, what)
  if not pub then return nil, err end
  if pub:fingerprint() ~= key:fingerprint() then
    return nil, fmt("the private key (fingerprint %s) is not %s (%s)",
      key:fingerprint():sub(1, 16), owner, pub:fingerprint():sub(1, 16))
  end
  return true
end

-- §9: the train comes to the stop at pos right after the last one that
-- signed, and result_hash is set exactly when some stop has signed.
function M.turn(cfg, stops, pos)
  local _, last = route.last_signed(stops)
  last = last or 0
  local has_results = cfg:get("result_hash") ~= nil
  if last == 0 and has_results then return nil, "result_hash is set but no stop has signed" end
  if last > 0 and not has_results then return nil, "stops have signed but result_hash is null" end
  if pos ~= last + 1 then
    local due = stops[last + 1]
    if not due then return nil, "every stop has signed: the train's route is complete" end
    return nil, fmt("it is station %s's turn (index %d), not station %s's (index %d)",
      due.station, due.index, stops[pos].station, stops[pos].index)
  end
  return true
end

-- The image and its files ---------------------------------------------------------------

-- §9: the image is a train, not one pre-run already decrypted.
function M.not_decrypted(img)
  if train.pre_run_layer(img) then
    return nil, "this image was already decrypted by pre-run: it holds plaintext, not a train to verify"
  end
  return true
end

-- §9: /opt/pht_train (its listing `entries`) holds exactly the listed files
-- plus an optional query.json, all regular files; directories only where a
-- listed file lives.
function M.immutable_files(cfg, entries)
  local want = files.expected_train_files(cfg)
  local names = {}
  for name in pairs(want) do names[#names + 1] = name end
  local dirs, seen = files.parent_dirs(names), {}
  for _, e in ipairs(entries) do
    if e.type == "dir" then
      if not dirs[e.path] then return nil, fmt("unexpected directory %s/%s", train.TRAIN, e.path) end
    elseif e.type ~= "file" then
      return nil, fmt("%s/%s is a %s, not a regular file", train.TRAIN, e.path, type_words(e.type))
    elseif not want[e.path] then
      return nil, fmt("%s/%s is not in file_list: files were added after the creator signed", train.TRAIN, e.path)
    else
      seen[e.path] = true
    end
  end
  for name, why in pairs(want) do
    if why == "listed" and not seen[name] then
      return nil, fmt("%s/%s is in file_list but missing from the image", train.TRAIN, name)
    end
  end
  return true
end

-- §9: the results tree (its listing) holds only regular files and directories.
function M.results_entries(entries)
  for _, e in ipairs(entries) do
    if e.type ~= "file" and e.type ~= "dir" then
      return nil, fmt("%s/%s is a %s: results hold only files and directories",
        train.RESULTS, e.path, type_words(e.type))
    end
  end
  return true
end

-- §9: before any stop signed, the results tree holds no file (nobody
-- signed one).
function M.no_unsigned_results(results)
  if #results > 0 then
    return nil, fmt("result_hash is null but %s holds %d file(s) nobody signed", train.RESULTS, #results)
  end
  return true
end

-- /opt/user_sym_key.key, when the image has it, holds creator.encrypted_key.
function M.user_key(img, wrapped)
  local stored = img:stat(train.USER_KEY) and img:read_file(train.USER_KEY, train.MAX_USER_KEY)
  if stored and stored ~= wrapped then
    return nil, train.USER_KEY .. " differs from creator.encrypted_key"
  end
  return true
end

-- Hashes and signatures -------------------------------------------------------------

-- §7.4: e_h over the plaintext train files equals the config's hash; e_h.
-- e_h (optional): the digest already taken over them in one pass.
function M.immutable_hash(cfg, train_files, e_h)
  local err
  if not e_h then e_h, err = files.immutable_hash(cfg:creator_id(), cfg:session_id(), train_files) end
  if not e_h then return nil, err end
  local want = field.unhex(cfg:get("hash"), "hash")
  if e_h ~= want then
    return nil, fmt("immutable files have changed: e_h is %s, the config's hash is %s",
      short(e_h), want and short(want) or "missing")
  end
  return e_h
end

-- The signature in hex field `sig_hex` (named `sig_what`) verifies over
-- `message` with the public key in hex field `pub_hex` (named `pub_what`).
-- `method` is "verify" (PKCS#1 v1.5 over the message) or "verify_digest"
-- (PSS over a SHA-512 digest, prehashed); `name` names the signature in
-- "cannot check NAME", `failure` is the message when it does not verify.
local function signature(pub_hex, pub_what, sig_hex, sig_what, method, message, name, failure)
  local pub, err = field.public_key(pub_hex, pub_what)
  if not pub then return nil, err end
  local sig, serr = field.unhex(sig_hex, sig_what)
  if not sig then return nil, serr end
  local ok, verr = pub[method](pub, message, sig)
  if ok == nil then return nil, "cannot check " .. name .. ": " .. tostring(verr) end
  if not ok then return nil, failure end
  return true
end

local function route_key(s)
  return s.rsa_public_key, fmt("route[%d].rsa_public_key", s.index)
end

-- §7.4: the creator's signature (PKCS#1 v1.5) verifies over e_h.
function M.creator_signature(cfg, e_h)
  local creator = cfg:get("creator") or {}
  return signature(creator.rsa_public_key, "creator.rsa_public_key", cfg:get("signature"), "signature",
    "verify", e_h, "the creator's signature", "the creator's signature does not verify over e_h")
end

-- §7.4: the builder's signature verifies over e_h || e_h_sig.
function M.build_signature(cfg, e_h)
  local build = cfg:get("build") or {}
  local creator_sig, err = field.unhex(cfg:get("signature"), "signature")
  if not creator_sig then return nil, err end
  return signature(build.rsa_public_key, "build.rsa_public_key", build.signature, "build.signature",
    "verify", e_h .. creator_sig, "the build signature",
    "the builder's signature does not verify over e_h and the creator's signature")
end

-- §7.5a: stop s's chain signature {digest, signature} verifies with its
-- route key.
function M.stop_signature(s)
  if not s.signature then return nil, route.stop_name(s) .. " has no signature" end
  local what = fmt("station %s's (index %d) signature", tostring(s.station), s.index)
  local digest, err = field.unhex(s.signature.digest, what .. " digest")
  if not digest then return nil, err end
  local pub_hex, pub_what = route_key(s)
  return signature(pub_hex, pub_what, s.signature.signature, what, "verify_digest", digest, what,
    what .. " does not verify")
end

-- §7.5a: every stop before position pos has a chain signature that verifies.
function M.previous_signatures(stops, pos)
  for i = 1, pos - 1 do
    local ok, err = M.stop_signature(stops[i])
    if not ok then return nil, err end
  end
  return true
end

-- §7.5c: e_d over the decrypted results equals the config's result_hash; e_d.
-- e_d (optional): the digest already taken over them in one pass.
function M.results_hash(cfg, results, e_d)
  local err
  if not e_d then e_d, err = files.results_hash(cfg, results) end
  if not e_d then return nil, err end
  local want, werr = field.unhex(cfg:get("result_hash"), "result_hash")
  if not want then return nil, werr end
  if e_d ~= want then
    return nil, fmt("results have changed: e_d is %s, the config's result_hash is %s", short(e_d), short(want))
  end
  return e_d
end

-- §7.5d: result_signature verifies over e_d with the key of stop s, which
-- wrote the results (`role` says which stop that is, for the message).
function M.result_signature(cfg, s, e_d, role)
  local pub_hex, pub_what = route_key(s)
  return signature(pub_hex, pub_what, cfg:get("result_signature"), "result_signature", "verify_digest", e_d,
    "result_signature", fmt("result_signature does not verify with the key of %s, %s", route.stop_name(s), role))
end

-- §9: the chain digest of the one stop at pos is SHA-512(the digests of the
-- stops before it || e_d).
function M.stop_chain_digest(cfg, stops, pos, e_d)
  local prefix, err = route.chain_prefix(cfg, stops, pos)
  if not prefix then return nil, err end
  local s = stops[pos]
  local digest, derr = field.unhex(s.signature and s.signature.digest, fmt("route[%d].signature.digest", s.index))
  if not digest then return nil, derr end
  if digest ~= pht.chain_digest(prefix, e_d) then
    return nil, fmt("station %s's (index %d) chain digest is not SHA-512(earlier digests || result_hash)",
      tostring(s.station), s.index)
  end
  return true
end

-- The runtime outside /opt (§9) ----------------------------------------------------

-- The train img was built on one of the station's master images (masters: a
-- list of {ref=, image=}, opened by pht.train.open_master) and its layers
-- above it change nothing but the train's paths under /opt. top: only the
-- first top layers count (post-run: those below the one pre-run wrote);
-- false: only that the layers begin with the master's. Returns the master it
-- matched, or nil and why each one did not.
function M.master(img, masters, top)
  local why = {}
  for _, m in ipairs(masters) do
    local t = top
    if t == false then t = #m.image:layers() end
    local ok, err = img:check_master(m.image, t or 0)
    if ok then return m end
    why[#why + 1] = tostring(err)
  end
  if #why == 1 then return nil, "the train does not keep to the station's master image: " .. why[1] end
  return nil, fmt("the train keeps to none of the station's %d master images: %s", #why,
    table.concat(why, "; "))
end

return M
