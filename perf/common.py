"""What the perf scripts share: free ports, a process's CPU and memory from /proc, the load average."""
import os
import socket
import time

TICK = os.sysconf("SC_CLK_TCK")


def free_port(kind=socket.SOCK_STREAM, host="127.0.0.1"):
    """A port the kernel just gave out and took back (TCP by default, or SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port, seconds=15):
    """Until something accepts on 127.0.0.1:port; raises after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {seconds} s")


def cpu_seconds(pid):
    """utime + stime of a process, every thread live or gone; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def status_kib(pid, key):
    """A kB line of /proc/PID/status (VmRSS, VmHWM, ...); None if the process or the line is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kib(pid):
    return status_kib(pid, "VmRSS")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
