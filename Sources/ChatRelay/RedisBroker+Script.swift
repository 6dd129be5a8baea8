extension RedisBroker {
    /// The publish path, one atomic round trip: check the idempotency key, append to the room's
    /// stream, record the key, trim, and PUBLISH the event with the id XADD assigned (which is why
    /// this is a script: MULTI/EXEC cannot hand XADD's id to PUBLISH).
    ///
    /// Trimming keeps `maxlen` entries, done in steps of `slack` (like `MAXLEN ~`, amortised), but
    /// by hand, so the script knows the newest trimmed id and can store it: `XADD … MAXLEN ~` does
    /// not say what it removed, and `max-deleted-entry-id` ignores trimming. With it a resuming
    /// client gets `reset` exactly when something it missed is gone.
    ///
    /// KEYS: stream, trimmed-marker, idempotency key (or "").
    /// ARGV: maxlen, slack, channel, json tail, room, idempotency TTL (seconds).
    /// Returns `{1, id}` when stored, `{0, "<id> <json>"}` for a repeated idempotency key.
    static let publishScript = """
        local stream, trimmed, idem = KEYS[1], KEYS[2], KEYS[3]
        local maxlen, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
        if idem ~= '' then
          local first = redis.call('GET', idem)
          if first then return {0, first} end
        end
        local id = redis.call('XADD', stream, '*', 'm', ARGV[4])
        local json = '{"id":"' .. id .. ARGV[4]
        if idem ~= '' then redis.call('SET', idem, id .. ' ' .. json, 'EX', ARGV[6]) end
        local length = redis.call('XLEN', stream)
        if length > maxlen + slack then
          local victims = redis.call('XRANGE', stream, '-', '+', 'COUNT', length - maxlen)
          redis.call('XTRIM', stream, 'MAXLEN', maxlen)
          redis.call('SET', trimmed, victims[#victims][1])
        end
        redis.call('PUBLISH', ARGV[3], ARGV[5] .. ' ' .. id .. ' ' .. json)
        return {1, id}
        """
}
