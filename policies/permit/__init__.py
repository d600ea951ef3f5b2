"""Permit plugins: a gang that fits may still be told to wait (the cycle asks them before the
queue policy's ``accept``; :class:`scheduler.interfaces.PermitPlugin`)."""
