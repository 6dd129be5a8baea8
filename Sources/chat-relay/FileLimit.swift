#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The open-file limit: a node holds a socket per stream, the benchmark thousands of them.
enum FileLimit {
    /// Raises this process's soft limit on open files to its hard limit; returns the new soft
    /// limit, or nil when it cannot be read.
    @discardableResult
    static func raiseToHardLimit() -> Int? {
        var limit = rlimit()
        #if canImport(Glibc)
            let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
            let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(resource, &limit)
        }
        return Int(limit.rlim_cur)
    }
}
