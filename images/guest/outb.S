/*
 * outb PORT VALUE: write one byte to an x86 I/O port from user space.
 *
 * The guest init uses it for the VMM's boot-marker port (0x440): the Debian
 * cloud kernel is built without CONFIG_DEVPORT, so /dev/port does not exist.
 * PORT (0..0xffff) and VALUE (0..0xff) are decimal or 0x-prefixed hex.
 * Needs CAP_SYS_RAWIO (ioperm). Exit status: 0 written, 1 usage, 2 ioperm
 * refused. Freestanding: no libc, assembled and linked by images/build with
 * binutils' as and ld.
 */
	.set	SYS_write, 1
	.set	SYS_ioperm, 173
	.set	SYS_exit, 60

	.text
	.globl	_start
_start:
	mov	(%rsp), %rcx		/* argc */
	cmp	$3, %rcx
	jne	usage

	mov	16(%rsp), %rsi		/* argv[1]: port */
	call	parse
	test	%rdx, %rdx
	jnz	usage
	cmp	$0xffff, %rax
	ja	usage
	mov	%rax, %r12

	mov	24(%rsp), %rsi		/* argv[2]: value */
	call	parse
	test	%rdx, %rdx
	jnz	usage
	cmp	$0xff, %rax
	ja	usage
	mov	%rax, %r13

	mov	$SYS_ioperm, %eax	/* ioperm(port, 1, 1) */
	mov	%r12, %rdi
	mov	$1, %esi
	mov	$1, %edx
	syscall
	test	%rax, %rax
	jnz	denied

	mov	%r12, %rdx
	mov	%r13, %rax
	outb	%al, %dx
	xor	%edi, %edi
	jmp	exit

usage:
	lea	usage_msg(%rip), %rsi
	mov	$usage_len, %edx
	mov	$1, %r12d
	jmp	complain
denied:
	lea	denied_msg(%rip), %rsi
	mov	$denied_len, %edx
	mov	$2, %r12d
complain:
	mov	$SYS_write, %eax
	mov	$2, %edi
	syscall
	mov	%r12d, %edi
exit:
	mov	$SYS_exit, %eax
	syscall

	.include	"parse.S"

	.section .rodata
usage_msg:
	.ascii	"usage: outb PORT VALUE (PORT <= 0xffff, VALUE <= 0xff)\n"
	.set	usage_len, . - usage_msg
denied_msg:
	.ascii	"outb: ioperm refused (needs CAP_SYS_RAWIO)\n"
	.set	denied_len, . - denied_msg
