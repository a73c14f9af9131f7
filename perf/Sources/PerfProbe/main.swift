import Reactor; print("ok")
