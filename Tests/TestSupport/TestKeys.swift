/// Fixed keys for the tests only (generated with openssl for this purpose; they sign nothing real).
public enum RSATestKey {
    public static let privatePEM = """
        -----BEGIN PRIVATE KEY-----
        MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC5gDJGc6uwwtAb
        cdCdB32dCOCfxS8HuQJHl4ahVtJ2LAd7A5xtgys+2ldyjmUEIi+QugdMLjRvfan2
        3oYPiIetCUJ0lwZxue2dF4WueV6UlIznw1mXbog28g1b269dGdY9oPGNHVALcNr+
        /TUs+ljU1EIUc9kAHawaF2jJ6HpEI+3Q88BKhCQdxlIC2XUY0KkChlBX5AssJ9OM
        dp4BEGWCMv0uvA8fe3rmoIYZvL8PjZiXg6be/JpeSOkQZtkxu+h1rWrJqoLNi7LO
        EykZmrOZIb9WHUsVoUrc4ARSruwo1llWWmkRH9bAsPRXoRgjtuZ06ZkoFSFMjHga
        cdFDYDCrAgMBAAECggEANM1wAivk4GDj2hwQtNIwCGZBglkfpQQdyQEx2nUbXXX0
        /ygs++NNiQufvsUXrhCJF5pMf3vbgyzzF4mKAZvseu3a09M1i2PQZloOvHZh3MtY
        PJSXyQo2jeVithYXmdnD6TEJ8RA5+7e5LsImw9HTPWnaEXZUe7r2hUrKkkaxnvla
        5Jy6VK5tCG4N2WN/IwgAH94oWKqBmwBgJZbrzkiy7bYMN58p7skUg7EnGI2BqXDN
        DUoDvgk7karrRcBaQwap2PueWPJijqkgNsc3qMtuA9TUQZHVwGGBJvYuh/MQ64f/
        FXytsyEfbQz96egrXnQzqixcp/wcDAUreJ1A/YnhMQKBgQDoVA3FkAJDmMhsWzEl
        M93UW5kqTM7oolWWjwKH2leKVWU7oCVk4Y8Gbarko03sp16GSPyAbUNI4/tfNVgs
        msINz8kMNPfrU1+BG2G0G9nh7hXjxByRwgi735bM8qt+iLE2W159Uei3Q+cIIy16
        ikIrqty/QOL222p7QAJlgonmqQKBgQDMZra0dj1LSQyTpBk3cljYI7RYw/H8qAMF
        XyxL+7Us7iG6LbozGccHUvAheTleT/Fk6soMd1Y+n7frQFnViJhv7h9xHNiHTB+A
        kIt3Uu4GVTnF8AfXeQPBFc3eU1pLtUsLYlkRsXsuR0AJLNya/0yaNL6+NKMlS0g6
        AVtnmRx1MwKBgQDY2AMWn8gNMZ/3ytG/CH8GwwvdeF0ysrmx0f8pr7g/TF81XM8q
        LoEhHeEAkA+eT8UhDyRl9hV0Bh5MCe0njLaMz6C1/QZdJa8hQN5bjhc6Ec9qjFOi
        E/m06QbGecVpT8ofkv5Jd9b+nqkXZkX/duY1/b8V30k34SmsqdzSxBlUKQKBgFDs
        EUVc0mNt5jbFbt5OvPHFIO9LlBAtDBUiWs0yN8Yz+NJWrDLy76LsqPj3n0jBaZZE
        hf1teY2Neij+7xHk5ETcB0Km4uqdrpMdprl08Zs8PoUoxFIALQZSdZChe0wh2DYH
        l6+zjksCFk4LnsMWc+NRInr3J+fp6Axe4SsgqO2VAoGAM7bH/SXei7CMNCtc23l6
        WE2f1BDU8Pa4b4hY4hkhjPi7yodh8SHhCcxYCOUA72b8Ns5aP/Iyumtpv0rVSXZ7
        h/NJB5yqF3i+WvgPTvIoJ/Ek1AAT2rdFUMJwpMy+xC0slPC8RpSIPxPXQDHDNnmh
        9DgKVPKyWlRjBYTgvXc/+c0=
        -----END PRIVATE KEY-----
        """
    public static let publicPEM = """
        -----BEGIN PUBLIC KEY-----
        MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuYAyRnOrsMLQG3HQnQd9
        nQjgn8UvB7kCR5eGoVbSdiwHewOcbYMrPtpXco5lBCIvkLoHTC40b32p9t6GD4iH
        rQlCdJcGcbntnReFrnlelJSM58NZl26INvINW9uvXRnWPaDxjR1QC3Da/v01LPpY
        1NRCFHPZAB2sGhdoyeh6RCPt0PPASoQkHcZSAtl1GNCpAoZQV+QLLCfTjHaeARBl
        gjL9LrwPH3t65qCGGby/D42Yl4Om3vyaXkjpEGbZMbvoda1qyaqCzYuyzhMpGZqz
        mSG/Vh1LFaFK3OAEUq7sKNZZVlppER/WwLD0V6EYI7bmdOmZKBUhTIx4GnHRQ2Aw
        qwIDAQAB
        -----END PUBLIC KEY-----
        """
}

public enum EdDSATestKey {
    public static let privatePEM = """
        -----BEGIN PRIVATE KEY-----
        MC4CAQAwBQYDK2VwBCIEIH5jRMAofkP9rBhjfKX1RmNnIjtUrygRorFQwgBr6dxR
        -----END PRIVATE KEY-----
        """
    public static let publicPEM = """
        -----BEGIN PUBLIC KEY-----
        MCowBQYDK2VwAyEA4K/G5UUv5QHoD4Rcx2AmllQtfH2LSax308c0JfXHaBY=
        -----END PUBLIC KEY-----
        """
}
