"""WeChat MP (mp.weixin.qq.com): the browserless login, the session kept encrypted in the
cache, the HTTP calls WeRSS makes, and the agent-side manager tying them to the parent."""
