/*
 * vsock: a minimal AF_VSOCK client and echo server for the guest's vsock
 * test mode (guest/modes/vsock.sh); busybox has no vsock applet.
 *
 *   vsock cid             print the local CID (IOCTL_VM_SOCKETS_GET_LOCAL_CID
 *                         on /dev/vsock) in decimal and a newline
 *   vsock send CID PORT   connect (stream), copy stdin to the peer until EOF,
 *                         shut down the sending side, then copy what the peer
 *                         sends to stdout until it closes
 *   vsock echo PORT       listen on PORT (any CID), print "vsock: listening on
 *                         port PORT" on stdout once listening, accept one
 *                         connection and send back every byte it reads until
 *                         EOF
 *
 * CID and PORT are u32, decimal or 0x-prefixed hex. Exit status: 0 done,
 * 1 usage, 2 connect failed, 3 any other failure. Failures print one line
 * "vsock: WHAT failed (errno N)" on stderr. EINTR is retried, short writes
 * are completed, and SIGPIPE is ignored so that a peer that goes away shows
 * up as EPIPE. Freestanding: no libc, assembled and linked by images/build
 * with binutils' as and ld, like outb.S.
 */
	.set	SYS_read, 0
	.set	SYS_write, 1
	.set	SYS_open, 2
	.set	SYS_close, 3
	.set	SYS_rt_sigaction, 13
	.set	SYS_ioctl, 16
	.set	SYS_socket, 41
	.set	SYS_connect, 42
	.set	SYS_accept, 43
	.set	SYS_shutdown, 48
	.set	SYS_bind, 49
	.set	SYS_listen, 50
	.set	SYS_exit, 60

	.set	EINTR, 4
	.set	EIO, 5
	.set	SIGPIPE, 13
	.set	O_RDONLY_CLOEXEC, 0x80000	/* O_RDONLY | O_CLOEXEC */
	.set	AF_VSOCK, 40
	.set	SOCK_STREAM_CLOEXEC, 0x80001	/* SOCK_STREAM | SOCK_CLOEXEC */
	.set	SHUT_WR, 1
	.set	IOCTL_VM_SOCKETS_GET_LOCAL_CID, 0x7b9
	.set	SOCKADDR_VM_SIZE, 16		/* family, reserved1, port, cid, flags + zero[3] */
	.set	BUF_SIZE, 65536

	.set	EXIT_USAGE, 1
	.set	EXIT_CONNECT, 2
	.set	EXIT_FAIL, 3

/* FAIL what: print "vsock: <what> failed (errno N)" with %rax = -errno, exit 3. */
	.macro	FAIL what
	lea	\what(%rip), %rsi
	mov	$\what\()_len, %edx
	mov	$EXIT_FAIL, %ebx
	jmp	fail
	.endm

	.text
	.globl	_start
_start:
	mov	$SYS_rt_sigaction, %eax	/* rt_sigaction(SIGPIPE, {SIG_IGN}, NULL, 8) */
	mov	$SIGPIPE, %edi
	lea	ignore(%rip), %rsi
	xor	%edx, %edx
	mov	$8, %r10d
	syscall

	mov	(%rsp), %r13		/* argc */
	cmp	$2, %r13
	jb	usage
	mov	16(%rsp), %r12		/* argv[1]: the subcommand */
	mov	%r12, %rsi
	lea	cmd_cid(%rip), %rdi
	call	streq
	je	do_cid
	mov	%r12, %rsi
	lea	cmd_send(%rip), %rdi
	call	streq
	je	do_send
	mov	%r12, %rsi
	lea	cmd_echo(%rip), %rdi
	call	streq
	je	do_echo
	jmp	usage

/* vsock cid */
do_cid:
	cmp	$2, %r13
	jne	usage
	mov	$SYS_open, %eax
	lea	dev_vsock(%rip), %rdi
	mov	$O_RDONLY_CLOEXEC, %esi
	xor	%edx, %edx
	call	sys
	test	%rax, %rax
	js	open_failed
	mov	%eax, %edi
	mov	$SYS_ioctl, %eax
	mov	$IOCTL_VM_SOCKETS_GET_LOCAL_CID, %esi
	lea	cidval(%rip), %rdx
	call	sys
	test	%rax, %rax
	js	ioctl_failed
	lea	msgbuf(%rip), %rdi
	mov	cidval(%rip), %eax	/* zero-extends the u32 */
	call	utoa
	movb	$'\n', (%rdi)
	inc	%rdi
	call	say
	test	%rax, %rax
	js	stdout_failed
	jmp	success

/* vsock send CID PORT */
do_send:
	cmp	$4, %r13
	jne	usage
	mov	24(%rsp), %rsi		/* argv[2]: CID */
	call	parse
	test	%edx, %edx
	jnz	usage
	mov	%eax, addr_cid(%rip)
	mov	32(%rsp), %rsi		/* argv[3]: port */
	call	parse
	test	%edx, %edx
	jnz	usage
	mov	%eax, addr_port(%rip)
	movw	$AF_VSOCK, addr(%rip)

	call	open_socket		/* %r12 = socket */
	mov	$SYS_connect, %eax
	mov	%r12d, %edi
	lea	addr(%rip), %rsi
	mov	$SOCKADDR_VM_SIZE, %edx
	call	sys
	test	%rax, %rax
	js	connect_failed

	xor	%r14d, %r14d		/* stdin to the socket */
	mov	%r12d, %r15d
	call	copy
	test	%rax, %rax
	jz	1f
	test	%edx, %edx
	jz	stdin_failed
	jmp	sock_write_failed
1:
	mov	$SYS_shutdown, %eax
	mov	%r12d, %edi
	mov	$SHUT_WR, %esi
	call	sys
	test	%rax, %rax
	js	shutdown_failed

	mov	%r12d, %r14d		/* the socket to stdout */
	mov	$1, %r15d
	call	copy
	test	%rax, %rax
	jz	success
	test	%edx, %edx
	jz	sock_read_failed
	jmp	stdout_failed

/* vsock echo PORT */
do_echo:
	cmp	$3, %r13
	jne	usage
	mov	24(%rsp), %rsi		/* argv[2]: port */
	call	parse
	test	%edx, %edx
	jnz	usage
	mov	%rax, %r13		/* port, for the "listening" line */
	mov	%eax, addr_port(%rip)
	movl	$0xffffffff, addr_cid(%rip)	/* VMADDR_CID_ANY */
	movw	$AF_VSOCK, addr(%rip)

	call	open_socket		/* %r12 = listening socket */
	mov	$SYS_bind, %eax
	mov	%r12d, %edi
	lea	addr(%rip), %rsi
	mov	$SOCKADDR_VM_SIZE, %edx
	call	sys
	test	%rax, %rax
	js	bind_failed
	mov	$SYS_listen, %eax
	mov	%r12d, %edi
	mov	$1, %esi
	call	sys
	test	%rax, %rax
	js	listen_failed

	lea	msgbuf(%rip), %rdi	/* "vsock: listening on port N\n" */
	lea	listening(%rip), %rsi
	mov	$listening_len, %ecx
	rep movsb
	mov	%r13, %rax
	call	utoa
	movb	$'\n', (%rdi)
	inc	%rdi
	call	say
	test	%rax, %rax
	js	stdout_failed

	mov	$SYS_accept, %eax
	mov	%r12d, %edi
	xor	%esi, %esi
	xor	%edx, %edx
	call	sys
	test	%rax, %rax
	js	accept_failed
	mov	%rax, %r14		/* the connection, both ways */
	mov	%rax, %r15
	mov	$SYS_close, %eax	/* no second connection */
	mov	%r12d, %edi
	syscall

	call	copy
	test	%rax, %rax
	jz	1f
	test	%edx, %edx
	jz	sock_read_failed
	jmp	sock_write_failed
1:
	mov	$SYS_close, %eax
	mov	%r14d, %edi
	syscall
success:
	xor	%edi, %edi
	mov	$SYS_exit, %eax
	syscall

/*
 * The failures. Each loads its message and jumps to fail with %rax still
 * holding the failed call's -errno.
 */
open_failed:		FAIL	m_open
ioctl_failed:		FAIL	m_ioctl
socket_failed:		FAIL	m_socket
bind_failed:		FAIL	m_bind
listen_failed:		FAIL	m_listen
accept_failed:		FAIL	m_accept
shutdown_failed:	FAIL	m_shutdown
stdin_failed:		FAIL	m_stdin
stdout_failed:		FAIL	m_stdout
sock_read_failed:	FAIL	m_sock_read
sock_write_failed:	FAIL	m_sock_write
connect_failed:
	lea	m_connect(%rip), %rsi
	mov	$m_connect_len, %edx
	mov	$EXIT_CONNECT, %ebx
	jmp	fail

usage:
	mov	$2, %edi
	lea	usage_msg(%rip), %rsi
	mov	$usage_len, %edx
	call	write_all
	mov	$EXIT_USAGE, %edi
	mov	$SYS_exit, %eax
	syscall

/*
 * fail: %rsi, %rdx = what failed; %rax = -errno; %ebx = exit status.
 * Writes "vsock: WHAT failed (errno N)\n" on stderr in one write and exits.
 */
fail:
	mov	%rax, %r8
	neg	%r8			/* errno */
	lea	msgbuf(%rip), %rdi
	mov	%rsi, %r9
	lea	m_prefix(%rip), %rsi
	mov	$m_prefix_len, %ecx
	rep movsb
	mov	%r9, %rsi
	mov	%rdx, %rcx
	rep movsb
	lea	m_errno(%rip), %rsi
	mov	$m_errno_len, %ecx
	rep movsb
	mov	%r8, %rax
	call	utoa
	movb	$')', (%rdi)
	movb	$'\n', 1(%rdi)
	add	$2, %rdi
	lea	msgbuf(%rip), %rsi
	mov	%rdi, %rdx
	sub	%rsi, %rdx
	mov	$2, %edi
	call	write_all
	mov	%ebx, %edi
	mov	$SYS_exit, %eax
	syscall

/* open_socket: %r12 = socket(AF_VSOCK, SOCK_STREAM, 0), or fail. */
open_socket:
	mov	$SYS_socket, %eax
	mov	$AF_VSOCK, %edi
	mov	$SOCK_STREAM_CLOEXEC, %esi
	xor	%edx, %edx
	call	sys
	test	%rax, %rax
	js	socket_failed
	mov	%rax, %r12
	ret

/*
 * sys: the system call %rax with its arguments in %rdi, %rsi, %rdx, %r10,
 * made again for as long as it fails with EINTR. Returns %rax; like
 * syscall, clobbers only %rcx and %r11.
 */
sys:
	push	%rax
1:	mov	(%rsp), %rax
	syscall
	cmp	$-EINTR, %rax
	je	1b
	add	$8, %rsp
	ret

/*
 * write_all: write %rdx bytes at %rsi to fd %edi, in as many writes as it
 * takes. Returns %rax = 0, or -errno of the write that failed (-EIO if a
 * write made no progress). Advances %rsi and lowers %rdx by what was written.
 */
write_all:
	test	%rdx, %rdx
	jz	2f
	mov	$SYS_write, %eax
	call	sys
	test	%rax, %rax
	js	3f
	jz	1f
	add	%rax, %rsi
	sub	%rax, %rdx
	jmp	write_all
1:	mov	$-EIO, %rax
	ret
2:	xor	%eax, %eax
3:	ret

/* say: write msgbuf up to %rdi on stdout. Returns %rax as write_all. */
say:
	lea	msgbuf(%rip), %rsi
	mov	%rdi, %rdx
	sub	%rsi, %rdx
	mov	$1, %edi
	jmp	write_all

/*
 * copy: copy fd %r14 to fd %r15 through buf until a read returns 0 (EOF).
 * Returns %rax = 0, or %rax = -errno with %edx = 0 if a read failed and
 * %edx = 1 if a write failed.
 */
copy:
	mov	$SYS_read, %eax
	mov	%r14d, %edi
	lea	buf(%rip), %rsi
	mov	$BUF_SIZE, %edx
	call	sys
	test	%rax, %rax
	jz	2f
	js	1f
	mov	%r15d, %edi
	lea	buf(%rip), %rsi
	mov	%rax, %rdx
	call	write_all
	test	%rax, %rax
	jz	copy
	mov	$1, %edx
	ret
1:	xor	%edx, %edx
2:	ret

/*
 * streq: %rsi, %rdi = NUL-terminated strings. ZF set if they are equal.
 * Clobbers %rax, %rsi, %rdi.
 */
streq:
	movzbl	(%rsi), %eax
	cmpb	%al, (%rdi)
	jne	1f
	inc	%rsi
	inc	%rdi
	test	%eax, %eax
	jnz	streq			/* ZF is set when both ended */
1:	ret

/*
 * utoa: write %rax in decimal at %rdi; returns %rdi just past the digits.
 * Clobbers %rax, %rcx, %rdx, %r8.
 */
utoa:
	mov	$10, %ecx
	xor	%r8d, %r8d
1:	xor	%edx, %edx
	div	%rcx
	add	$'0', %edx
	push	%rdx
	inc	%r8d
	test	%rax, %rax
	jnz	1b
2:	pop	%rax
	mov	%al, (%rdi)
	inc	%rdi
	dec	%r8d
	jnz	2b
	ret

	.include	"parse.S"

	.section .rodata
	.balign	8
ignore:				/* struct sigaction for rt_sigaction: SIG_IGN */
	.quad	1, 0, 0, 0		/* handler, flags, restorer, mask */
dev_vsock:
	.asciz	"/dev/vsock"
cmd_cid:
	.asciz	"cid"
cmd_send:
	.asciz	"send"
cmd_echo:
	.asciz	"echo"
usage_msg:
	.ascii	"usage: vsock cid\n"
	.ascii	"       vsock send CID PORT   (stdin to CID:PORT, then its answer to stdout)\n"
	.ascii	"       vsock echo PORT       (echo one connection on PORT back to it)\n"
	.ascii	"CID and PORT: u32, decimal or 0x-prefixed hex\n"
	.set	usage_len, . - usage_msg
listening:
	.ascii	"vsock: listening on port "
	.set	listening_len, . - listening

	.macro	MSG name, text
\name:
	.ascii	"\text"
	.set	\name\()_len, . - \name
	.endm
	MSG	m_prefix, "vsock: "
	MSG	m_errno, " failed (errno "
	MSG	m_open, "open /dev/vsock"
	MSG	m_ioctl, "IOCTL_VM_SOCKETS_GET_LOCAL_CID"
	MSG	m_socket, "socket(AF_VSOCK)"
	MSG	m_connect, "connect"
	MSG	m_bind, "bind"
	MSG	m_listen, "listen"
	MSG	m_accept, "accept"
	MSG	m_shutdown, "shutdown"
	MSG	m_stdin, "reading stdin"
	MSG	m_stdout, "writing stdout"
	MSG	m_sock_read, "reading the socket"
	MSG	m_sock_write, "writing the socket"

	.bss
	.balign	16
buf:	.skip	BUF_SIZE		/* the copy buffer */
msgbuf:	.skip	128			/* one output line */
addr:	.skip	SOCKADDR_VM_SIZE	/* struct sockaddr_vm */
	.set	addr_port, addr + 4
	.set	addr_cid, addr + 8
cidval:	.skip	4
