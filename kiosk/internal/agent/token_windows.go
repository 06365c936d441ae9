//go:build windows

package agent

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Windows has no permission bits; the file's DACL decides who can read it.
// The agent creates the file with a protected DACL (no inherited entries)
// granting full access to its own user, SYSTEM and Administrators only,
// and refuses a file whose DACL lets anyone else read or change it.

// createPrivate creates path with a protected DACL for the agent's user,
// SYSTEM and Administrators, failing if it exists.
func createPrivate(path string) (*os.File, error) {
	user, err := currentUserSID()
	if err != nil {
		return nil, err
	}
	sd, err := windows.SecurityDescriptorFromString("D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;" + user.String() + ")")
	if err != nil {
		return nil, fmt.Errorf("agent: token file security descriptor: %w", err)
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	name, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	h, err := windows.CreateFile(name, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, sa,
		windows.CREATE_NEW, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}

func currentUserSID() (*windows.SID, error) {
	tu, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("agent: the agent's user: %w", err)
	}
	return tu.User.Sid, nil
}

// tokenRights are the rights nobody else may hold on the token file:
// reading it, changing it, or changing who may.
const tokenRights = windows.FILE_READ_DATA | windows.FILE_WRITE_DATA | windows.FILE_APPEND_DATA |
	windows.GENERIC_READ | windows.GENERIC_WRITE | windows.GENERIC_ALL | windows.WRITE_DAC | windows.WRITE_OWNER

// checkTokenFile refuses a token file whose DACL grants tokenRights to
// anyone but the agent's user, SYSTEM and Administrators.
func checkTokenFile(f *os.File) error {
	user, err := currentUserSID()
	if err != nil {
		return err
	}
	sd, err := windows.GetSecurityInfo(windows.Handle(f.Fd()), windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("agent: reading the integrator token file's ACL: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		// No DACL, or a NULL one: everyone has full access.
		return fmt.Errorf("%w (%s has no access control list)", ErrTokenFilePermissions, f.Name())
	}
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return fmt.Errorf("agent: reading the integrator token file's ACL: %w", err)
		}
		switch ace.Header.AceType {
		case windows.ACCESS_DENIED_ACE_TYPE:
			continue
		case windows.ACCESS_ALLOWED_ACE_TYPE:
		default:
			return fmt.Errorf("%w (%s has an access entry of type %d the agent cannot judge)", ErrTokenFilePermissions, f.Name(), ace.Header.AceType)
		}
		if uint32(ace.Mask)&tokenRights == 0 {
			continue
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		if sid.Equals(user) || sid.IsWellKnown(windows.WinLocalSystemSid) || sid.IsWellKnown(windows.WinBuiltinAdministratorsSid) {
			continue
		}
		return fmt.Errorf("%w (%s grants access to %s)", ErrTokenFilePermissions, f.Name(), sid.String())
	}
	return nil
}
