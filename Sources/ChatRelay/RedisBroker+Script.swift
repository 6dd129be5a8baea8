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
    /// A stream the XADD created (the room is new, or expired, or Redis lost it) gets its marker
    /// set to its first id: whatever came before is gone, and a client resuming from an older id
    /// gets `reset`. With a history TTL, every publish sets the stream's and the marker's expiry
    /// anew, so an idle room's keys go away together.
    ///
    /// On a Redis Cluster the event goes out with `SPUBLISH` (sharded pub/sub: only the node
    /// serving the room's slot, where the script runs, sends it to its subscribers).
    ///
    /// KEYS: stream, trimmed-marker, and the idempotency key when there is one (only keys of the
    /// room's slot, as a cluster requires of a script).
    /// ARGV: maxlen, slack, channel, json tail, room, idempotency TTL (seconds), history TTL
    /// (milliseconds, 0: none), what the JSON holds before the id (`Message.jsonBeforeID`), the
    /// publish command (`PUBLISH` or `SPUBLISH`), and what the idempotency record holds after the
    /// id (`IdempotencyRecord.redisTail`: the message's time and fingerprint).
    /// Returns `{1, id}` when stored, `{0, "<id> <time> <fingerprint>"}` for a repeated
    /// idempotency key (the node compares the fingerprint and rebuilds the message).
    static let publishScript = """
        local stream, trimmed, idem = KEYS[1], KEYS[2], KEYS[3]
        local maxlen, slack = tonumber(ARGV[1]), tonumber(ARGV[2])
        if idem then
          local first = redis.call('GET', idem)
          if first then return {0, first} end
        end
        local id = redis.call('XADD', stream, '*', 'm', ARGV[4])
        local json = ARGV[8] .. id .. ARGV[4]
        if idem then redis.call('SET', idem, id .. ' ' .. ARGV[10], 'EX', ARGV[6]) end
        local length = redis.call('XLEN', stream)
        if length == 1 then
          redis.call('SET', trimmed, id)
        elseif length > maxlen + slack then
          local victims = redis.call('XRANGE', stream, '-', '+', 'COUNT', length - maxlen)
          redis.call('XTRIM', stream, 'MAXLEN', maxlen)
          redis.call('SET', trimmed, victims[#victims][1])
        end
        local ttl = tonumber(ARGV[7])
        if ttl > 0 then
          redis.call('PEXPIRE', stream, ttl)
          redis.call('PEXPIRE', trimmed, ttl)
        end
        redis.call(ARGV[9], ARGV[3], ARGV[5] .. ' ' .. id .. ' ' .. json)
        return {1, id}
        """
}
