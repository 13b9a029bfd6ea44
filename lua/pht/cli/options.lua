-- The command line's option tables: the options several verbs share,
-- defined once; the parser; and the help text, generated from the same
-- tables (so a man page can be generated from them too).
--
-- An option is a table:
--   name     the long name, "--name"
--   short    a one-letter alias, "-q" (optional)
--   arg      the value's placeholder ("ID", "PEM"); absent for a switch
--   flag     true for a switch (takes no value)
--   many     true: the option may repeat; its values are collected in a list
--   help     one sentence for --help
--   default  the value taken when the option is not given (shown in --help)
--   env      the environment variable whose value is taken when the option
--            is not given (shown in --help as the default)
--   group    the shared group it belongs to ("station", "workflow"), for
--            the shared options only
--
-- A verb (see pht.cli.VERBS) is a table:
--   name, summary, usage (after "pht NAME"), args (names of the positional
--   arguments, all required), description, image (true: IMAGE takes a
--   reference, and --help says which), options (a list of option tables;
--   M.group(name) and M.shared(name[, changes]) stand for shared ones),
--   exit_status, run(host, prog, opts, positional) -> exit code.
local M = {}

-- The shared options ---------------------------------------------------------------

local SHARED = {
  { name = "station", arg = "ID", group = "station", env = "STATION_ID",
    help = "this station's id on the route" },
  { name = "key", arg = "PEM", group = "station", env = "PRIVATE_KEY_PATH",
    help = "this station's private key" },
  { name = "password-env", arg = "VAR", group = "station", default = "PRIVATE_KEY_PASSWORD",
    help = "read the key's password from $VAR" },
  { name = "master", arg = "IMAGE", many = true, group = "master",
    help = "a master image this station trusts (repeatable; NAME@sha256:HEX or an image id sha256:HEX "
      .. "pins it): the train must be built on one, with nothing outside its /opt paths changed above "
      .. "it (doc/station-guide.md)" },
  { name = "script", arg = "FILE", many = true, group = "workflow",
    help = "a script that changes the workflow by step name (repeatable)" },
  { name = "tmpdir", arg = "DIR", group = "workflow",
    help = "where the private temporary directory goes (default: $TMPDIR or /tmp)" },
  { name = "timeout", arg = "SPEC", group = "workflow",
    help = "limits of the Docker Engine calls: SECONDS without a byte, or "
      .. "connect=S,idle=S,total=S,stream-idle=S,stream-total=S (after $PHT_DOCKER_TIMEOUT)" },
  { name = "quiet", short = "q", flag = true, group = "workflow", help = "no progress on stderr" },
  { name = "verbose", short = "v", flag = true, group = "workflow", help = "also report each step that passed" },
  { name = "json", flag = true, group = "workflow",
    help = "print one JSON object on stdout: the steps and their outcomes, the image written, the exit code" },
  { name = "creds", arg = "USER:PASS", group = "registry",
    help = "docker:// credentials for every repository (default: the auth files, doc/registry.md)" },
  { name = "authfile", arg = "PATH", group = "registry", env = "REGISTRY_AUTH_FILE",
    help = "docker:// credentials from this auth.json alone" },
  { name = "cert-dir", arg = "DIR", group = "registry",
    help = "docker:// CAs (*.crt) and client pairs (X.cert, X.key) besides the system's" },
  { name = "tls-verify", arg = "BOOL", group = "registry", default = "true",
    help = "docker://: verify the registry's certificate; false also allows plain http" },
  { name = "platform", arg = "OS/ARCH", group = "registry", default = "linux/amd64",
    help = "docker://: the image an index resolves to" },
}
M.SHARED = SHARED

local HELP = { name = "help", short = "h", flag = true, help = "this text" }

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- The shared option `name`, with the fields of `changes` replaced (false
-- removes a field: { env = false }).
function M.shared(name, changes)
  for _, o in ipairs(SHARED) do
    if o.name == name then
      local c = copy(o)
      for k, v in pairs(changes or {}) do
        if v == false then c[k] = nil else c[k] = v end
      end
      return c
    end
  end
  error("pht.cli.options: no shared option " .. tostring(name), 2)
end

-- Every shared option of group `name`, in order.
function M.group(name)
  local list = {}
  for _, o in ipairs(SHARED) do
    if o.group == name then list[#list + 1] = o end
  end
  if #list == 0 then error("pht.cli.options: no shared group " .. tostring(name), 2) end
  return { group_of = name, list = list }
end

-- A verb from its description: the option list flattened (groups
-- expanded) into verb.order, and verb.options keyed by long name.
function M.verb(v)
  local given = v.options or {}
  v.order, v.options = {}, {}
  for _, o in ipairs(given) do
    local list = o.group_of and o.list or { o }
    for _, item in ipairs(list) do
      if v.options[item.name] then error("pht.cli.options: --" .. item.name .. " twice in " .. v.name, 2) end
      v.order[#v.order + 1] = item
      v.options[item.name] = item
    end
  end
  v.args = v.args or {}
  return v
end

-- Parsing ------------------------------------------------------------------------------

local function env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then return nil end
  return value
end
M.env = env

-- Parse argv (the words after the verb) for verb v. Returns opts (long
-- name -> value, a list for `many`, true for a switch; opts.help for -h)
-- and the positional arguments, or nil and a message.
function M.parse(v, argv)
  local opts, pos = {}, {}
  local short = {}
  for name, o in pairs(v.options) do if o.short then short[o.short] = name end end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
      break
    elseif a == "-h" or a == "--help" then
      opts.help = true
    elseif a:sub(1, 2) == "--" or (a:sub(1, 1) == "-" and #a == 2) then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      if not name then
        name = a:sub(1, 2) == "--" and a:sub(3) or short[a:sub(2)]
        if not name then return nil, "unknown option " .. a end
      end
      local o = v.options[name]
      if not o then return nil, "unknown option --" .. name end
      if o.flag then
        if value then return nil, "option --" .. name .. " takes no value" end
        opts[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "option --" .. name .. " needs a value (" .. o.arg .. ")" end
        end
        if o.many then
          opts[name] = opts[name] or {}
          table.insert(opts[name], value)
        else
          if opts[name] ~= nil then return nil, "option --" .. name .. " given twice" end
          opts[name] = value
        end
      end
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  if opts.help then return opts, pos end
  if #pos < #v.args then return nil, "missing " .. v.args[#pos + 1] end
  if #pos > #v.args then return nil, "unexpected argument " .. pos[#v.args + 1] end
  for name, o in pairs(v.options) do
    if opts[name] == nil then
      if o.env then opts[name] = env(o.env) end
      if opts[name] == nil then opts[name] = o.default end
    end
  end
  return opts, pos
end

-- Help text ------------------------------------------------------------------------------

local WIDTH = 79 -- the text's right margin
local COLUMN = 24 -- where an option's help starts, unless its name is longer

-- Words of text filled into lines of at most `width` columns.
local function fill(text, width)
  local lines, line = {}, ""
  for word in text:gmatch("%S+") do
    if line ~= "" and #line + 1 + #word > width then
      lines[#lines + 1] = line
      line = word
    else
      line = line == "" and word or (line .. " " .. word)
    end
  end
  if line ~= "" then lines[#lines + 1] = line end
  return lines
end

-- "  -q, --quiet" or "  --station ID".
local function left(o)
  return "  " .. (o.short and ("-" .. o.short .. ", ") or "") .. "--" .. o.name .. (o.arg and (" " .. o.arg) or "")
end

-- The help sentence of an option with its default.
function M.option_help(o)
  local text = o.help or ""
  if o.env then
    text = text .. " (default: $" .. o.env .. ")"
  elseif o.default ~= nil then
    text = text .. " (default: " .. tostring(o.default) .. ")"
  end
  return text
end

-- The "Options:" lines of a list of options.
function M.options_text(list)
  local out = {}
  for _, o in ipairs(list) do
    local l = left(o)
    local help = fill(M.option_help(o), WIDTH - COLUMN)
    if #l + 2 > COLUMN then
      out[#out + 1] = l
      l = ""
    end
    for k, line in ipairs(help) do
      local head = k == 1 and l or ""
      out[#out + 1] = head .. string.rep(" ", COLUMN - #head) .. line
    end
    if #help == 0 and l ~= "" then out[#out + 1] = l end
  end
  return table.concat(out, "\n") .. "\n"
end

-- Paragraphs of prose: blank-line separated, each filled to the margin.
function M.paragraphs(text)
  local out = {}
  for para in (text .. "\n\n"):gmatch("(.-)\n%s*\n") do
    if para:match("%S") then out[#out + 1] = table.concat(fill(para, WIDTH), "\n") end
  end
  return table.concat(out, "\n\n")
end

-- The whole --help text of verb v; `image_help` is the text saying what
-- IMAGE may be (as it is, not filled).
function M.help(v, image_help)
  local parts = {
    "Usage: pht " .. v.name .. (v.usage and (" " .. v.usage) or ""),
    M.paragraphs(v.description),
  }
  if v.image then parts[#parts + 1] = image_help end
  local list = {}
  for _, o in ipairs(v.order) do list[#list + 1] = o end
  list[#list + 1] = HELP
  parts[#parts + 1] = "Options:\n" .. M.options_text(list):gsub("\n$", "")
  parts[#parts + 1] = M.paragraphs("Exit status: " .. v.exit_status)
  return table.concat(parts, "\n\n") .. "\n"
end

return M
