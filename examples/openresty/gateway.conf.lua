-- The gateway's configuration (doc/gateway.md). A Lua file that returns a
-- table; it runs with no globals at all, so it can only hold values. nginx
-- reads it once at startup (init_by_lua, in the master process).
return {
  -- The stations this gateway verifies trains for. A request picks one with
  -- ?station=ID; without it the default_station is used. The private key is
  -- read from its path by the worker processes (so their user, e.g.
  -- www-data, must be able to read it: mode 0640, group www-data), never
  -- from a request.
  stations = {
    {
      id = "station_1",                           -- the id on train routes
      private_key = "/etc/pht/station_1.pem",     -- PEM: PKCS#1 or PKCS#8
      -- password_file = "/etc/pht/station_1.pass", -- when the key is encrypted
    },
  },
  default_station = "station_1",   -- optional with a single station

  -- Private scratch space for the plaintext a verification decrypts; each
  -- job gets its own 0700 directory below it, removed when the job ends.
  tmpdir = "/var/lib/pht-gateway/tmp",

  -- Verifications running at once in each worker process. Keep it at most
  -- the thread_pool's threads (render.lua --threads).
  max_jobs = 2,
  -- Seconds a request waits for a free job slot before it gets 503.
  queue_timeout = 10,
  -- Seconds one verification may take; checked between steps (then 503).
  job_time_limit = 120,

  -- Give the memory a burst of requests used back to the system once the
  -- worker is idle again (glibc's malloc_trim; see doc/gateway.md).
  trim_memory = true,

  -- A station's own pre-run customisation (doc/workflow.md), applied to
  -- what the gateway verifies, e.g. a policy check on the route.
  -- station_script = "/etc/pht/station.lua",

  -- The master images this station trusts (doc/station-guide.md, "Trusted
  -- master images"): a train not built on one of them, or whose layers above
  -- it change anything outside its /opt paths, is refused at check_master.
  -- masters = { "docker-daemon:pht/master@sha256:...", "oci:/var/lib/pht/masters:python-3.11" },
}
